"""The program the sandbox starts (`python -I -S -c BOOTSTRAP CONFIG`): it contains the run in mode "root",
sets the resource limits, runs the code and reports how it ended. Standard library only: it runs in the
sandbox's interpreter, not the runner's."""

# The bootstrap runs inside the sandbox. In mode "root" it starts as root and pid 1 of the run's new
# pid, mount, IPC and network namespaces: it builds the run's root filesystem, forks the program (which
# chroots, drops to the sandbox uid and runs the code), reaps orphans and reports the program's wait
# status on `status_fd`. It is passed on the command line, far below the kernel's limit on one argument.
BOOTSTRAP = r"""
import json, os, sys
cfg = json.loads(sys.argv[1])
with os.fdopen(cfg["code_fd"], "rb") as f:
    source = f.read().decode("utf-8")

def run_program():
    import resource, traceback
    for name, (soft, hard) in cfg["limits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if cfg["audit"]:
        blocked = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "os.fork", "ctypes.")
        def guard(event, args):
            if event.startswith(blocked):
                raise PermissionError("sandbox: " + event + " is not allowed")
        sys.addaudithook(guard)
    sys.argv = ["main.py"]
    def report(error):  # the traceback without this bootstrap's frame
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
    try:
        exec(compile(source, "main.py", "exec"), {"__name__": "__main__", "__file__": "main.py"})
    except AssertionError as error:
        report(error)
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException as error:
        report(error)
        sys.exit(cfg["exit_crash"])

def contain():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND = 1, 2, 4, 8, 32, 4096
    def mount(src, target, fstype, flags, data=None):
        args = [None if a is None else a.encode() for a in (src, target, fstype, data)]
        if libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), target)
    def write(path, text, required=True):
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError:
            if required:
                raise
    status = cfg["status_fd"]
    os.write(status, b"pid %s\n" % os.readlink("/proc/self").encode())  # host pid: host /proc still
    for procs in cfg["cgroup_procs"]:
        write(procs, "0")
    write("/proc/self/oom_score_adj", "-1000", False)  # an OOM kill takes the program, not the init
    root, uid = "/tmp", cfg["uid"]  # a tmpfs over /tmp, private to this mount namespace, becomes /
    mount("tmpfs", root, "tmpfs", NOSUID | NODEV, "size=%dk,nr_inodes=%d,mode=755" % tuple(cfg["tmpfs"]))
    for path, link in cfg["view"]:
        if link is not None:
            os.symlink(link, root + path)
            continue
        os.makedirs(root + path)
        mount(path, root + path, None, BIND)
        mount(None, root + path, None, BIND | REMOUNT | RDONLY | NOSUID | NODEV)
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        os.makedirs(root + path, exist_ok=True)
        os.chmod(root + path, 0o1777)
    for name in ("null", "zero", "full", "random", "urandom"):
        write(root + "/dev/" + name, "")
        mount("/dev/" + name, root + "/dev/" + name, None, BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(link, root + "/dev/" + name)
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", NOSUID | NODEV | NOEXEC)
    home = root + cfg["home"]
    os.makedirs(home)
    write(home + "/main.py", source)
    os.chmod(home + "/main.py", 0o644)
    os.chown(home, uid, uid)
    os.chmod(home, 0o700)
    child = os.fork()
    if child == 0:
        try:
            os.write(status, b"pid %s\n" % os.readlink("/proc/self").encode())
            os.close(status)
            os.close(cfg["lifeline_fd"])
            if cfg["keyctl"]:  # keyctl(JOIN_SESSION_KEYRING): a new, empty one, not the runner's
                libc.syscall(cfg["keyctl"], 1, None)
            os.chroot(root)
            os.chdir(cfg["home"])
            write("/proc/self/oom_score_adj", "1000")  # first to go (the init may lack the right to -1000)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        except BaseException as error:
            sys.stderr.write("sandbox: %r\n" % (error,))
            os._exit(cfg["exit_crash"])
        run_program()
        return
    def watch():  # the runner died (nothing holds the lifeline's other end): end the run
        os.read(cfg["lifeline_fd"], 1)
        os._exit(1)
    import threading
    threading.Thread(target=watch, daemon=True).start()
    while True:  # reap orphans until the program ends; the kernel then kills what is left
        pid, wait_status = os.wait()
        if pid == child:
            os.write(status, b"exit %d\n" % wait_status)
            os._exit(0)

if cfg["contain"]:
    try:
        contain()
    except BaseException as error:
        if os.getpid() != 1:
            raise
        import traceback
        where = traceback.extract_tb(error.__traceback__)[-1]
        os.write(cfg["status_fd"], ("setup-error %r at line %d\n" % (error, where.lineno)).encode())
        os._exit(1)
else:
    run_program()
"""
