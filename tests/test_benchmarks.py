"""Smoke tests of benchmarks/: each benchmark runs on a tiny size and writes a well-formed result, the
CLI works, and the appendix page's results block matches the committed JSON (so it cannot go stale).

Benchmarks are not timed tests: nothing here asserts a speed. Everything runs on one thread (on a busy
2-core machine, OpenMP threads waiting on each other make tiny ops many times slower).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys

import pytest
import torch

from benchmarks import ALL, book, common, iwae, quality, redraw, report, throughput, throughput_1t
from benchmarks.__main__ import QUICK, main, run_benchmark

MODULES = {"throughput": throughput, "throughput_1t": throughput_1t, "quality": quality, "iwae": iwae,
           "book": book, "redraw": redraw}



@pytest.mark.parametrize("name", ["throughput", "throughput_1t", "quality", "iwae"])
def test_each_benchmark_runs_tiny_and_writes_a_valid_result(tmp_path, name):
    path = run_benchmark(name, quick=True, out=tmp_path, threads=1)
    assert path == tmp_path / f"{name}.json"
    result = json.loads(path.read_text())
    MODULES[name].validate(result)
    assert result["quick"] is True and result["machine"]["torch_threads"] == 1
    assert result["machine"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert result["versions"]["torch"] == torch.__version__
    if name == "throughput":
        d = result["results"]["datasets"]["mnist-5k"]
        assert d["n_train"] == QUICK["throughput"]["limit"]
        # the FLOPs of the step's matrix products listed for the roofline are torch's count
        flops = d["flops"]
        assert flops["per_example_step_gemms"] == pytest.approx(flops["per_example_forward_backward"])
        assert flops["per_example_forward_backward"] == pytest.approx(3.28e6, rel=1e-3)
    if name == "iwae":
        runs = result["results"]["runs"]
        assert [(r["chunk_size"], r["malloc"]) for r in runs] == (
            [(c, "kept") for c in QUICK["iwae"]["chunk_sizes"]]
            + [(c, "default") for c in QUICK["iwae"]["default_malloc_chunks"]])
        assert all(r["minor_page_faults"] >= 0 and r["system_seconds"] >= 0 for r in runs)
        # the chunk size changes how the samples are grouped, not the estimate
        assert result["results"]["max_abs_difference_between_chunk_sizes"] < 1e-3
        assert all(math.isfinite(r["mean_log_likelihood"]) for r in runs)


def test_book_benchmark_times_a_notebook_in_a_fresh_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nassert os.environ['VAE_CORE_CACHE']\n1 + 1")]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    result = book.run([path], quick=True)
    book.validate(result)
    (run,) = result["results"]["notebooks"]
    assert run["notebook"] == "tiny.ipynb" and run["ok"], run["error"]
    assert result["results"]["total_seconds"] == pytest.approx(run["seconds"], abs=0.1)
    assert not path.with_name("tiny.nbconvert.ipynb").exists()  # the output went to a temp folder


def test_step_gemms_are_the_flop_counter_total():
    from vae_core.models import VAE
    from vae_core.summary import flops_per_example

    gemms = throughput.step_gemms(batch=32)
    assert len(gemms) == 14  # 5 forward, 5 grad-weight, 4 grad-input (the data need no gradient)
    total = sum(g["flops"] for g in gemms) / 32
    assert total == pytest.approx(flops_per_example(VAE(784, 400, 20), batch_size=32)["forward_backward"])


def test_validate_names_the_problem():
    good = common.envelope("quality", common.machine_info(torch.device("cpu")), {}, {}, quick=True)
    common.validate(good, "quality")
    with pytest.raises(ValueError, match="expected a 'iwae' result"):
        common.validate(good, "iwae")
    broken = dict(good, machine={k: v for k, v in good["machine"].items() if k != "cpu"})
    with pytest.raises(ValueError, match="machine has no 'cpu'"):
        common.validate(broken)
    with pytest.raises(ValueError):
        common.validate(dict(good, results={"x": math.nan}))  # not plain JSON


def test_cli_quick_run_and_report(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nprose\n\n{report.BEGIN}\nstale\n{report.END}\nafter\n")
    assert main(["quality", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert main(["--report", "--out", str(tmp_path), "--page", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Title\n\nprose\n\n") and text.endswith(f"{report.END}\nafter\n")
    assert "stale" not in text and "Same quality" in text and "Quick (smoke-test) run" in text
    assert "Not run yet: `python -m benchmarks throughput`" in text
    assert report.page_is_current(page, tmp_path)
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_committed_results_are_valid():
    for name in ALL:
        result = common.read(name)
        if result is not None:
            MODULES[name].validate(result)
            assert result["quick"] is False, f"benchmarks/results/{name}.json is a quick (smoke) run"


def test_book_page_shows_the_committed_results():
    assert report.PAGE.exists()
    assert report.page_is_current(), ("book/benchmarks.md is stale: run `python -m benchmarks --report` "
                                      "and commit the page")


def test_page_markers_are_required(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# no markers\n")
    with pytest.raises(ValueError, match="marker lines"):
        report.update_page(page, tmp_path)



def test_gpu_paths_smoke_on_the_cpu(tmp_path):
    """The GPU check's code, run with the CPU as the device under test (tiny sizes): every check
    passes and the result is written in the benchmarks' envelope."""
    from benchmarks import gpu_paths

    result = gpu_paths.run(tmp_path, device="cpu", epochs=1, n=20, k=20)
    checks = result["results"]["checks"]
    assert set(checks) == {"fit", "evaluate", "explorer"} and result["results"]["all_ok"], checks
    assert checks["fit"]["same_seed_max_weight_difference"] == 0.0  # CPU: bit for bit
    assert (tmp_path / "gpu_paths.json").exists()


def test_makefile_exports_the_malloc_setting_the_benchmarks_measure():
    makefile = (common.ROOT / "Makefile").read_text()
    assert f"GLIBC_TUNABLES ?= {common.GLIBC_MALLOC_TUNABLES}\n" in makefile
    assert "export GLIBC_TUNABLES\n" in makefile


_FAULTS = """
import resource, torch
faults = []
for _ in range(30):  # the evaluation loops' pattern: the same two 48 MiB temporaries at every step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.empty(12 * 2**20).fill_(1.0)
    b = torch.empty(12 * 2**20).fill_(2.0)
    del a, b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[20:]))  # the last 10 steps, once the heap has settled
"""
# 48 MiB is above the most glibc's dynamic mmap threshold ever rises to (32 MiB), so by default every
# such block is mapped afresh: deterministic. (Below it, glibc's default behaviour depends on where
# the heap happens to lie: a 16 MiB version of this test passed by chance in 1 run out of 6.)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="GLIBC_TUNABLES is glibc's")
def test_the_malloc_setting_stops_large_temporaries_from_page_faulting_each_time():
    def faults(tunables):
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        if tunables:
            env["GLIBC_TUNABLES"] = tunables
        out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True,
                             text=True, check=True)
        return int(out.stdout.split()[-1])

    pages = 2 * 48 * 2**20 // 4096  # of the two temporaries of one step
    assert faults(None) > 10 * pages // 2                 # default: mapped afresh at every step
    assert faults(common.GLIBC_MALLOC_TUNABLES) < pages // 10  # kept: reused, no new faults
