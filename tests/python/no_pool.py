import sys
print("plain output", sys.argv[1:])
sys.stderr.write("to stderr\n")
sys.exit(3)
