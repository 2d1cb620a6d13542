import subprocess
import sys

from pixal3d.cli import main


def test_doctor_reports_versions_devices_and_folders(capsys, monkeypatch, tmp_path):
    (tmp_path / "naf").mkdir()
    monkeypatch.setenv("PIXAL3D_MODELS", str(tmp_path))
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "torch " in out and "device selected: cpu" in out
    assert f"naf            found    {tmp_path / 'naf'}" in out
    assert f"dinov3         missing  {tmp_path / 'dinov3-vitl16-pretrain-lvd1689m'}" in out


def test_bad_device_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "pixal3d", "doctor", "--device", "tpu"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
