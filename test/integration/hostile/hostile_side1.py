#!/usr/bin/env python3
"""A hostile side 1 in a real pod: listens on a colo name through colo-node, takes the channel
the victim (libcolo side 0, memory and doorbells from colo-node) offers, echoes like
colo-bench-ipc serve, and after ECHO_BEFORE messages attacks the victim with the descriptors it
was handed, then keeps echoing. usage: hostile_side1.py NAME truncate|bellblock"""
import fcntl, os, socket, struct, sys
sys.path.insert(0, os.environ["COLO_PY"])
import colo
from colo import channel

name, attack = sys.argv[1], sys.argv[2]
listener = colo.listen(name)
print("serving", flush=True)
conn = listener.accept()
msg, fds, _, _ = socket.recv_fds(conn, 9, 4)
mem, bell0, bell1 = fds
print(f"memory {os.fstat(mem).st_size} bytes, seals {fcntl.fcntl(mem, fcntl.F_GET_SEALS):#x}, "
      f"bells {'sockets' if all(os.path.stat.S_ISSOCK(os.fstat(b).st_mode) for b in (bell0, bell1)) else 'other'}", flush=True)
ch = channel.Channel(mem, bell0, bell1, conn.fileno(), 1, struct.unpack_from("<Q", msg, 1)[0])
mode = None
count = 0
while True:
    try:
        m = ch.read(timeout=30)
    except colo.ColoError as e:
        print(f"hostile: read ended: {e}", flush=True)
        break
    data = bytes(m[:8]); n = len(m); m.release(); ch.release()
    if mode is None:
        mode = data[:1]
        continue
    count += 1
    if count == 1000:
        if attack == "truncate":
            try:
                os.ftruncate(mem, 0); print("hostile: truncated the agent's memory to 0", flush=True)
            except OSError as e:
                print(f"hostile: ftruncate refused: {e}", flush=True)
        elif attack == "bellblock":
            # side 0's end of the bell socketpair came with the offer: make it blocking, fill it
            fcntl.fcntl(bell0, fcntl.F_SETFL, fcntl.fcntl(bell0, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            with socket.socket(fileno=os.dup(bell0)) as s:
                try:
                    while True:
                        s.send(b"x" * 4096, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
            print("hostile: side 0's bell made blocking and its queue filled", flush=True)
    buf = ch.reserve(n, timeout=30)
    buf[:len(data)] = data[:n]
    buf.release()
    ch.commit(n)
    if attack == "bellblock" and count >= 1000:
        ch._rx.flags[channel.CONSUMER_SLEEPING] = 1  # "side 1 sleeps": the victim rings on every commit
        ch._tx.flags[channel.PRODUCER_SLEEPING] = 1  # and on every release
