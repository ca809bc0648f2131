# Measures what idle connections cost a spate-broker: resident memory and descriptors per
# connection, and CPU time and thread wake-ups (context switches) over 10 s idle, with and without
# them. Several broker binaries in one call are measured one after the other in the same run, to
# compare builds. For the producer's latency beside an idle crowd, use
# `spate-bench ... --idle-connections N` (bench/README.md).
# Usage: python3 idle_connections.py PATH/TO/spate-broker [MORE/spate-broker ...] COUNT
# (COUNT below the broker's descriptor share for connections; see tuning/README.md; 0 measures
# the idle broker alone).
import os, socket, subprocess, sys, time, tempfile, re
binaries, count = sys.argv[1:-1], int(sys.argv[-1])
IDLE_S = 10

def measure(binary):
    data = tempfile.mkdtemp(dir=os.environ.get("SPATE_BENCH_DATA_ROOT", "."))
    p = subprocess.Popen([binary, "--data-dir", data, "--listen", "127.0.0.1:0", "--shards", "2", "--log-level", "info"],
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1", "SPATE_KAFKA_LISTEN": "127.0.0.1:0"})
    addr = None
    for line in p.stderr:
        m = re.search(r"broker ready address=(\S+)", line)
        if m: addr = m.group(1); break
    host, port = addr.rsplit(":", 1)
    def rss(): return int([l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
    def cpu():
        f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    def switches():
        total = 0
        for task in os.listdir(f"/proc/{p.pid}/task"):
            try:
                for l in open(f"/proc/{p.pid}/task/{task}/status"):
                    if l.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(l.split()[1])
            except FileNotFoundError:
                pass
        return total
    def fds(): return len(os.listdir(f"/proc/{p.pid}/fd"))
    def idle():
        c, w = cpu(), switches(); time.sleep(IDLE_S)
        return cpu() - c, (switches() - w) / IDLE_S
    time.sleep(2)
    r0, f0 = rss(), fds(); cpu0, wake0 = idle()
    socks = [socket.create_connection((host, int(port))) for _ in range(count)]
    time.sleep(3)
    r1, f1 = rss(), fds(); cpu1, wake1 = idle()
    per = max(count, 1)
    print(f"{binary} connections={count} rss_before={r0} rss_after={r1} rss_per_connection={(r1-r0)/per:.0f} "
          f"fds_per_connection={(f1-f0)/per:.2f} idle_cpu_s_per_{IDLE_S}s_without={cpu0:.3f} with={cpu1:.3f} "
          f"wakeups_per_s_without={wake0:.1f} with={wake1:.1f}", flush=True)
    for s in socks: s.close()
    p.terminate(); p.wait()
    subprocess.run(["rm", "-rf", data])

for binary in binaries:
    measure(binary)
