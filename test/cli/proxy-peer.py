#!/usr/bin/env python3
# The two ends of a connection through `faultline proxy`, for proxy.sh.
#   server echo|sink|reset DIR
#                          listen on 127.0.0.1:0, print the port, serve
#                          forever; at each connection's end write
#                          "BYTES SHA256 END" to DIR/last (END: eof, reset);
#                          reset: send "hello", then reset the connection
#   recv PORT              read until the end: prints "DATA END"
#   echo PORT SIZE         send SIZE random bytes, read the echo: prints
#                          "SHA_SENT SHA_RECEIVED BYTES_RECEIVED"
#   rtt PORT N             N one-byte round trips: prints the smallest, ms
#   hold PORT PID          one round trip, SIGUSR1 to PID, then wait for
#                          what comes: prints reset, eof or data
#   send PORT SIZE         send SIZE bytes: prints "sent N" and how it ended
import errno, hashlib, os, signal, socket, struct, sys, threading, time


def serve(mode, out_dir):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    print(ls.getsockname()[1], flush=True)

    def one(c):
        if mode == "reset":
            # a greeting, then a reset right behind it
            c.sendall(b"hello")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            return
        h, n, end = hashlib.sha256(), 0, "eof"
        try:
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                h.update(b)
                n += len(b)
                if mode == "echo":
                    c.sendall(b)
        except ConnectionResetError:
            end = "reset"
        except BrokenPipeError:
            end = "reset"
        try:
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        c.close()
        tmp = os.path.join(out_dir, ".last")
        with open(tmp, "w") as f:
            f.write("%d %s %s\n" % (n, h.hexdigest(), end))
        os.rename(tmp, os.path.join(out_dir, "last"))

    while True:
        c, _ = ls.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def connect(port):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def echo(port, size):
    data = os.urandom(size)
    s = connect(port)
    got = []

    def sender():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        got.append(b)
    t.join()
    back = b"".join(got)
    print(hashlib.sha256(data).hexdigest(), hashlib.sha256(back).hexdigest(), len(back))


def rtt(port, n):
    s = connect(port)
    best = None
    for _ in range(n):
        t0 = time.monotonic()
        s.sendall(b"x")
        if s.recv(1) != b"x":
            sys.exit("no echo")
        dt = (time.monotonic() - t0) * 1000
        best = dt if best is None else min(best, dt)
    s.close()
    print("%.3f" % best)


def hold(port, pid):
    s = connect(port)
    s.sendall(b"ping")
    if s.recv(4) != b"ping":
        sys.exit("no echo before the cut")
    os.kill(int(pid), signal.SIGUSR1)
    try:
        b = s.recv(1)
        print("data" if b else "eof")
    except ConnectionResetError:
        print("reset")


def recv(port):
    got, end = b"", "eof"
    try:
        s = connect(port)  # a reset may come before connect() returns
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            got += b
    except ConnectionResetError:
        end = "reset"
    print(got.decode() or "-", end)


def send(port, size):
    s = connect(port)
    n, end = 0, "eof"
    chunk = os.urandom(1 << 14)
    try:
        while n < size:
            n += s.send(chunk[: min(len(chunk), size - n)])
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    except (ConnectionResetError, BrokenPipeError):
        end = "reset"
    except OSError as e:
        # shutdown() of a socket a reset has closed already
        if e.errno != errno.ENOTCONN:
            raise
        end = "reset"
    print("sent", n, end)


cmd = sys.argv[1]
if cmd == "server":
    serve(sys.argv[2], sys.argv[3])
elif cmd == "echo":
    echo(sys.argv[2], int(sys.argv[3]))
elif cmd == "rtt":
    rtt(sys.argv[2], int(sys.argv[3]))
elif cmd == "hold":
    hold(sys.argv[2], sys.argv[3])
elif cmd == "recv":
    recv(sys.argv[2])
elif cmd == "send":
    send(sys.argv[2], int(sys.argv[3]))
else:
    sys.exit("unknown command " + cmd)
