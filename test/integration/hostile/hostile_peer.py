#!/usr/bin/env python3
"""A hostile side 0 of a colo channel (the attacks of the hostile-peer review, issue 13/16).
It lays out memory and doorbells the way colo-node does (a memfd sealed against shrink and grow,
a Unix stream socketpair), or the weaker kinds an attacker could offer instead, hands them to a
victim (side 1) as 'C' + u64 size with SCM_RIGHTS, then plays one attack.
usage: hostile_peer.py ATTACK VICTIM-CMD...   (the victim gets the pair as COLO_PAIR_FD)
Prints 'HOSTILE[attack]: victim exit RC after S s' or 'HOSTILE[attack]: victim STILL RUNNING'."""
import fcntl, mmap, os, socket, struct, subprocess, sys, time

ATTACK, VICTIM = sys.argv[1], sys.argv[2:]
SIZE = 1 << 20
ALL_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL

mem = os.memfd_create("hostile", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
os.ftruncate(mem, SIZE)
m = mmap.mmap(mem, SIZE, mmap.MAP_SHARED)
cap = 1
while cap * 2 <= (SIZE - 64 - 2 * 192) // 2:
    cap *= 2
R0, R1 = 64, 64 + 192 + cap
struct.pack_into("<QIIQQQ", m, 0, 0x314E4843304C4F43, 1, 2, R0, R1, cap)
offered = SIZE
if ATTACK == "huge-2g":          # 2 GiB sparse: must not be mapped, let alone populated
    os.ftruncate(mem, 2 << 30); offered = 2 << 30
elif ATTACK == "empty":          # an empty memory file
    os.ftruncate(mem, 0); offered = 0
elif ATTACK == "size-lie":       # the offer says another size than the file's
    offered = 2 * SIZE
if ATTACK not in ("unsealed",):
    fcntl.fcntl(mem, fcntl.F_ADD_SEALS, ALL_SEALS if ATTACK != "shrink-only-seal" else fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
if ATTACK == "eventfd-bells":
    bell0, bell1 = os.eventfd(0, os.EFD_NONBLOCK), os.eventfd(0, os.EFD_NONBLOCK)
elif ATTACK == "pipe-bells":
    bell0, bell1 = os.pipe()
else:
    a0, a1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    bell0, bell1 = a0.detach(), a1.detach()

a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
victim = subprocess.Popen(VICTIM, pass_fds=[b.fileno()], env=dict(os.environ, COLO_PAIR_FD=str(b.fileno())))
b.close()
socket.send_fds(a, [b"C" + struct.pack("<Q", offered)], [mem, bell0, bell1])

REFUSED = ("unsealed", "shrink-only-seal", "huge-2g", "empty", "size-lie", "eventfd-bells", "pipe-bells")
if ATTACK in REFUSED:  # the victim must refuse the offer: nothing more to do (the memory may be gone)
    try:
        rc = victim.wait(float(os.environ.get("WAIT", 20)))
        print(f"HOSTILE[{ATTACK}]: victim exit {rc} after 0.00s", flush=True)
    except subprocess.TimeoutExpired:
        print(f"HOSTILE[{ATTACK}]: victim STILL RUNNING", flush=True)
        victim.kill(); victim.wait()
    sys.exit(0)

D0 = R0 + 192
head = seq = 0
def u64(off, v): struct.pack_into("<Q", m, off, v % (1 << 64))
def rec(pos, length, sq, payload=b""):
    o = D0 + (pos & (cap - 1))
    struct.pack_into("<II", m, o, length, sq)
    m[o + 8:o + 8 + len(payload)] = payload
def ring_victim():
    try:
        os.write(bell0, b"\1")
    except OSError:
        pass
def send(payload):
    global head, seq
    seq += 1
    rec(head, len(payload), seq, payload)
    head += (8 + len(payload) + 7) & ~7
    u64(R0, head)
    if struct.unpack_from("<I", m, R0 + 128)[0]:
        ring_victim()

send(b"hello")
time.sleep(float(os.environ.get("DELAY", 1.0)))
t0 = time.monotonic()
if ATTACK == "truncate":          # shrink the memory under the victim's mapping
    try:
        os.ftruncate(mem, 0); print("HOSTILE[truncate]: shrunk the memory", flush=True)
    except OSError as e:
        print(f"HOSTILE[truncate]: the kernel refused: {e}", flush=True)
elif ATTACK == "grow":
    try:
        os.ftruncate(mem, 4 * SIZE); print("HOSTILE[grow]: grew the memory", flush=True)
    except OSError as e:
        print(f"HOSTILE[grow]: the kernel refused: {e}", flush=True)
elif ATTACK in ("bell-block", "bell-full"):
    # Our copy of the victim's end (bell 1) is the victim's open file description: make it
    # blocking, fill the queue towards us, and say we sleep, so that the victim rings.
    if ATTACK == "bell-block":
        fcntl.fcntl(bell1, fcntl.F_SETFL, fcntl.fcntl(bell1, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    with socket.socket(fileno=os.dup(bell1)) as s:
        try:
            while True:
                s.send(b"x" * 4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
    struct.pack_into("<I", m, R1 + 128, 1)
elif ATTACK == "bell-spam":
    with socket.socket(fileno=os.dup(bell0)) as s:
        try:
            for _ in range(200000):
                s.send(b"\1", socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
elif ATTACK == "head-beyond":
    u64(R0, head + cap + 8)
elif ATTACK == "len-huge":
    rec(head, 0xFFFFFFF0, seq + 1); u64(R0, head + 16)
elif ATTACK == "bad-seq":
    rec(head, 4, seq + 7); u64(R0, head + 16)
elif ATTACK == "tail-beyond":
    u64(R1 + 64, 1 << 40)
elif ATTACK == "die-now":         # gone at once, as if killed: everything of ours closed
    a.close(); os.close(bell0); os.close(bell1); os.close(mem)
if os.environ.get("DIE"):
    a.close(); os.close(mem); os.close(bell0); os.close(bell1)
try:
    rc = victim.wait(float(os.environ.get("WAIT", 20)))
    print(f"HOSTILE[{ATTACK}]: victim exit {rc} after {time.monotonic() - t0:.2f}s", flush=True)
except subprocess.TimeoutExpired:
    print(f"HOSTILE[{ATTACK}]: victim STILL RUNNING after {time.monotonic() - t0:.2f}s", flush=True)
    victim.kill(); victim.wait()
