"""Run reporting (kinema.train.monitor): the metrics log, the progress line, the loss curve."""

from __future__ import annotations

import io
import json

from kinema.train.monitor import MetricsLog, Progress, plot_loss_curve


def test_metrics_log_is_cut_back_to_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path, 0)
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": 1.0 / step})
    with open(log.path, "a") as f:
        f.write('{"step": 5, "lo')  # a line cut short by a kill
    assert [r["step"] for r in MetricsLog(tmp_path, 2).read()] == [1, 2]
    assert MetricsLog(tmp_path, 0).read() == []  # a fresh run starts an empty log
    assert log.path.read_text() == ""


def test_progress_redraws_on_a_terminal_and_prints_lines_otherwise():
    tty = io.StringIO()
    p = Progress(total=10, start=0, stream=tty, tty=True)
    p.update(1, 0.5)
    p.update(2)
    p.close()
    out = tty.getvalue()
    assert out.count("\r") == 2 and "step 2/10" in out and "loss 0.5000" in out and "steps/s" in out and "ETA" in out
    plain = io.StringIO()
    q = Progress(total=10, start=4, stream=plain, tty=False)
    q.update(5, 0.25)  # between log intervals: silent
    q.update(6, 0.125, force=True)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("step 6/10 [############--------] loss 0.1250")


def test_loss_curve_is_a_png_and_skips_an_empty_log(tmp_path):
    log = MetricsLog(tmp_path, 0)
    assert plot_loss_curve(log, tmp_path) is None
    for step in range(1, 6):
        log.write({"step": step, "loss": 2.0 / step})
    log.write({"step": 5, "val_train_pass": 0.5})  # validation rows carry no loss
    path = plot_loss_curve(log, tmp_path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".loss*"))  # no temp file left behind
    assert json.loads(log.path.read_text().splitlines()[-1]) == {"step": 5, "val_train_pass": 0.5}
