"""The seed's subprocess side: run, check_output, call with a shell, Popen.communicate."""
import subprocess
subprocess.run(["echo", "hello"])
print(subprocess.check_output(["printf", "out"]))
subprocess.call("exit 3", shell=True)
p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
out, _ = p.communicate(b"typed in")
print(out)
