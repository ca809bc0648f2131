# Measures what idle connections cost a spate-broker: resident memory and descriptors per
# connection, and CPU over 10 s idle with and without them. A stopgap until spate-bench has an
# idle-crowd workload (issue #18). Usage: python3 idle_connections.py PATH/TO/spate-broker COUNT
# (COUNT below the broker's descriptor share for connections; see tuning/README.md).
import os, socket, subprocess, sys, time, tempfile, re
binary, count = sys.argv[1], int(sys.argv[2])
data = tempfile.mkdtemp(dir=os.environ.get("SPATE_BENCH_DATA_ROOT", "."))
p = subprocess.Popen([binary, "--data-dir", data, "--listen", "127.0.0.1:0", "--shards", "2", "--log-level", "info"],
                     stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
addr = None
for line in p.stderr:
    m = re.search(r"broker ready address=(\S+)", line)
    if m: addr = m.group(1); break
host, port = addr.rsplit(":", 1)
def rss(): return int([l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def fds(): return len(os.listdir(f"/proc/{p.pid}/fd"))
time.sleep(2)
r0, f0 = rss(), fds(); c0 = cpu(); time.sleep(10); idle0 = cpu() - c0
socks = []
for i in range(count):
    s = socket.create_connection((host, int(port))); socks.append(s)
time.sleep(3)
r1, f1 = rss(), fds(); c1 = cpu(); time.sleep(10); idle1 = cpu() - c1
print(f"{os.path.basename(binary)} connections={count} rss_before={r0} rss_after={r1} rss_per_connection={(r1-r0)/count:.0f} "
      f"fds_per_connection={(f1-f0)/count:.2f} idle_cpu_s_per_10s_without={idle0:.3f} with={idle1:.3f}")
for s in socks: s.close()
p.terminate(); p.wait()
subprocess.run(["rm", "-rf", data])
