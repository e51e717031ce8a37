# A real Slurm cluster on this host for the tests: munged, slurmctld and one
# slurmd per "node" (several slurmd with -N fake a multi-node cluster on one
# host), every path under one folder. Sourced by the test scripts:
#   cluster_start DIR NODES GPUS_PER_NODE   (exports SLURM_CONF)
#   cluster_stop DIR
# Needs root and Debian's slurmctld, slurmd, slurm-client and munge.

cluster_need() {
  local missing=()
  for prog in slurmctld slurmd srun squeue scancel scontrol sinfo munged munge unmunge; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "FAIL: the Slurm tests need ${missing[*]} (apt-get install slurmctld slurmd slurm-client munge; scripts/bootstrap does)" >&2
    return 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL: the Slurm tests start slurmd and munged and must run as root" >&2
    return 1
  fi
}

# munged runs as the munge user with its socket under /run/munge; one munged
# serves every cluster (a second one would find the socket taken). One this
# script started is stopped by cluster_munge_stop.
MUNGE_STARTED=""
cluster_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  MUNGE_STARTED=1
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "FAIL: munged does not answer (munge -n | unmunge)" >&2
  return 1
}

cluster_start() {
  local dir=$1 nodes=$2 gpus=$3
  local host cpus mem port i
  host=$(hostname -s)
  # More CPUs than the host has (config_overrides): the tests run several
  # steps at once that mostly sleep, on CI's 2 cores.
  cpus=16
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  # Ports of their own, so that tests running at once do not meet, and
  # below the kernel's ephemeral range (where srun's and the steps' own
  # sockets may already hold one).
  local ephemeral
  ephemeral=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  port=$(( 20000 + (RANDOM % ((ephemeral - 20000 - 16) / 8)) * 8 ))
  mkdir -p "$dir"/{state,log,dev}
  for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool$i"; done
  for i in $(seq 0 $((gpus - 1))); do mknod -m 0666 "$dir/dev/nvidia$i" c 195 "$i"; done
  {
    echo "ClusterName=partune$port"
    echo "SlurmctldHost=$host"
    echo "SlurmctldPort=$port"
    echo "SlurmdPort=$((port + 1))"
    echo "SlurmUser=root"
    echo "AuthType=auth/munge"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core_Memory"
    echo "DefMemPerCPU=64"
    echo "SlurmdParameters=config_overrides"
    echo "MailProg=/bin/true"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "StateSaveLocation=$dir/state"
    echo "SlurmdSpoolDir=$dir/spool%n"
    echo "SlurmctldPidFile=$dir/slurmctld.pid"
    echo "SlurmdPidFile=$dir/slurmd-%n.pid"
    echo "SlurmctldLogFile=$dir/log/slurmctld.log"
    echo "SlurmdLogFile=$dir/log/slurmd-%n.log"
    echo "ReturnToService=2"
    echo "KillWait=2"
    # A dead slurmd is a DOWN node after seconds, not the default 5 minutes.
    echo "SlurmdTimeout=5"
    echo "MinJobAge=10"
    echo "GresTypes=gpu"
    if [ "$nodes" -eq 1 ]; then
      echo "NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN"
      echo "PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    else
      for i in $(seq 1 "$nodes"); do
        echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((port + 1 + i)) CPUs=$cpus RealMemory=$((mem / nodes)) Gres=gpu:$gpus State=UNKNOWN"
      done
      echo "PartitionName=test Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    fi
  } >"$dir/slurm.conf"
  {
    echo "AutoDetect=off"
    if [ "$nodes" -eq 1 ]; then
      echo "NodeName=$host Name=gpu File=$dir/dev/nvidia[0-$((gpus - 1))]"
    else
      echo "NodeName=n[1-$nodes] Name=gpu File=$dir/dev/nvidia[0-$((gpus - 1))]"
    fi
  } >"$dir/gres.conf"
  export SLURM_CONF=$dir/slurm.conf
  cluster_munge || return 1
  slurmctld -c -f "$SLURM_CONF" || { echo "FAIL: slurmctld did not start" >&2; cat "$dir/log/slurmctld.log" >&2; return 1; }
  if [ "$nodes" -eq 1 ]; then
    slurmd -f "$SLURM_CONF" || { echo "FAIL: slurmd did not start" >&2; return 1; }
  else
    for i in $(seq 1 "$nodes"); do
      slurmd -f "$SLURM_CONF" -N "n$i" || { echo "FAIL: slurmd -N n$i did not start" >&2; return 1; }
    done
  fi
  # Up to 60 s: on CI's 2 busy cores a slurmd can take a while to register.
  for _ in $(seq 300); do
    if [ "$(sinfo -h -o %T | sort -u)" = "idle" ] && [ "$(sinfo -h -N -o %N | wc -l)" -eq "$nodes" ]; then return 0; fi
    sleep 0.2
  done
  echo "FAIL: the nodes did not become idle (ports from $port):" >&2
  sinfo -N >&2
  tail -n 20 "$dir"/log/*.log >&2
  return 1
}

cluster_stop() {
  local dir=$1 f pids=()
  for f in "$dir"/slurmd*.pid "$dir"/slurmctld.pid; do
    [ -s "$f" ] && pids+=("$(cat "$f" 2>/dev/null)")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      # A stopped daemon nobody reaps lingers as a zombie: gone all the same.
      [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" = Z ] && break
      sleep 0.1
    done
  done
  return 0
}

cluster_munge_stop() {
  if [ -n "$MUNGE_STARTED" ] && [ -s /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null
  fi
  return 0
}
