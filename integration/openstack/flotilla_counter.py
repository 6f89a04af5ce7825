"""A fault counter shared by the test cloud's fault switches: a file holding a number N."""
import fcntl


def take(path):
    """Takes one from the counter in `path`: True if it was above 0 (the fault fires)."""
    try:
        with open(path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            n = int((f.read() or "0").strip() or 0)
            if n <= 0:
                return False
            f.seek(0)
            f.truncate()
            f.write(str(n - 1))
            return True
    except (FileNotFoundError, ValueError):
        return False
