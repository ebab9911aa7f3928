"""One way for the tests to run `python -m gpt2scratch` in-process."""
from gpt2scratch.__main__ import main


def run_main(argv, capsys):
    """(exit code, stdout, stderr) of main(argv), whether it returns or raises SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
