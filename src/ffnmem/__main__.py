import sys

try:  # importing torch takes seconds; Ctrl-C then is still one line, as it is once main() runs
    from ffnmem.cli import console_main
except KeyboardInterrupt:
    sys.stderr.write("interrupted: stopped by Ctrl-C; results already written are intact\n")
    sys.exit(130)

console_main()
