"""What the CLI tests share: running ``istd`` in-process and checking the one-line error contract."""

from istd_kernels.cli.main import main


def cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``istd *argv`` run in this process."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *names):
    """A user's mistake: status 2, one ``istd: error:`` line naming each of ``names``, no traceback."""
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("istd: error: ") and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


def tiny_synth(tmp_path_factory, n=8):
    """A tiny synthetic data set written by ``istd synth`` (32x32 images); returns its folder."""
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(root), "--name", "tiny", "--n", str(n), "--size", "32", "--seed", "1"]) == 0
    return root / "tiny"
