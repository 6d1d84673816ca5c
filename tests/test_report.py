"""The report plots exactly what real runs logged: tiny LightningCLI runs, then the report's series and files."""

import shutil
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_lightning.callbacks import ProgressReport
from mbrl_lightning.cli import lightning_main
from mbrl_lightning.cli import main as cli_main
from mbrl_lightning.report import build_report, load_runs, main, make_report


def tiny_config(save_dir, name, seed=0, ensemble_size=2, horizon=3, mpc=True, cem_iterations=None, epochs=2,
                planner=None):
    """A seconds-long run on the obstacles env; ``mpc=False``: model training only (Problem 1 style)."""
    callbacks = [{"class_path": "mbrl_lightning.callbacks.CollectRandom", "init_args": {"num_steps": 300}}]
    if mpc:
        callbacks.append({"class_path": "mbrl_lightning.callbacks.Evaluate", "init_args": {"num_episodes": 2}})
    callbacks.append({"class_path": "mbrl_lightning.callbacks.ProgressReport", "init_args": {"plot": False}})
    model = {"class_path": "mbrl_lightning.agents.MPCAgent" if mpc else "mbrl_lightning.models.DynamicsEnsemble",
             "init_args": {"ensemble_size": ensemble_size, "hidden_size": 16, "num_layers": 1}}
    if mpc:
        model["init_args"]["planner"] = {"class_path": "mbrl_lightning.planning.RandomShooting",
                                         "init_args": {"horizon": horizon, "num_sequences": 16}}
        if cem_iterations:
            model["init_args"]["planner"] = {"class_path": "mbrl_lightning.planning.CEM", "init_args": {
                "horizon": horizon, "num_sequences": 16, "num_iterations": cem_iterations, "num_elites": 4}}
        if planner:
            model["init_args"]["planner"] = planner
    return {
        "seed_everything": seed,
        "trainer": {"max_epochs": epochs if mpc else 1, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False,
                    "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": str(save_dir), "name": name}},
                    "callbacks": callbacks},
        "model": model,
        "data": {"class_path": "mbrl_lightning.data.ReplayDataModule",
                 "init_args": {"env_id": "mbrl/Obstacles-v0", "env_kwargs": {"max_episode_steps": 40},
                               "batch_size": 32, "steps_per_epoch": 8}},
    }


def fit(tmp, config, *args):
    """Run ``fit`` in-process; return what ProgressReport captured from ``trainer.callback_metrics``."""
    path = tmp / f"{config['trainer']['logger']['init_args']['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    with mock.patch.object(sys, "argv", ["mbrl_lightning"]):  # pytest's own arguments are not for the CLI
        cli = lightning_main(["fit", "--config", str(path), *args])
    capture = next(c for c in cli.trainer.callbacks if isinstance(c, ProgressReport))
    return {"returns": [r for _, r in capture.returns], "losses": list(capture.losses),
            "return_std": float(cli.trainer.callback_metrics.get("eval/return_std", float("nan")))}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    logs = tmp / "runs"
    runs = {
        "halfcheetah_0_iter_tiny": fit(tmp, tiny_config(logs, "halfcheetah_0_iter_tiny", mpc=False)),
        "reacher_ablation": fit(tmp, tiny_config(logs, "reacher_ablation", seed=0)),
        "reacher_ablation__seed=1": fit(tmp, tiny_config(logs, "reacher_ablation__seed=1", seed=1)),
        "reacher_ablation__ensemble_size=1": fit(tmp, tiny_config(logs, "reacher_ablation__ensemble_size=1",
                                                                  ensemble_size=1)),
        "reacher_ablation__horizon=2": fit(tmp, tiny_config(logs, "reacher_ablation__horizon=2", horizon=2)),
    }
    runs["halfcheetah_multi_iter"] = fit(tmp, tiny_config(logs, "halfcheetah_multi_iter"))
    runs["halfcheetah_cem"] = fit(tmp, tiny_config(logs, "halfcheetah_cem", cem_iterations=2, epochs=1))
    icem = {"class_path": "mbrl_lightning.planning.ICEM",
            "init_args": {"horizon": 3, "num_sequences": 16, "num_iterations": 2, "num_elites": 4}}
    runs["halfcheetah_icem_tiny"] = fit(tmp, tiny_config(logs, "halfcheetah_icem_tiny", epochs=1, planner=icem))
    # a run that is none of the brief's experiments must still get a figure
    shutil.copytree(logs / "reacher_ablation__horizon=2", logs / "my_experiment")
    return logs, runs


def figure(data, key):
    return next(f for f in data.figures if f.key == key)


def event_values(run_dir, tag):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def test_problem1_series_is_the_logged_training_loss(logged):
    logs, captured = logged
    data = build_report(load_runs(logs))
    (panel,) = figure(data, "problem1_model_loss").panels
    (series,) = panel.series
    assert panel.logy and series.label == "halfcheetah_0_iter_tiny"
    expected = captured["halfcheetah_0_iter_tiny"]["losses"]
    assert len(expected) == 8  # one per gradient step (log_every_n_steps=1)
    np.testing.assert_allclose(series.y, expected, rtol=1e-6)
    np.testing.assert_allclose(series.y, event_values(logs / "halfcheetah_0_iter_tiny" / "version_0", "train/loss"),
                               rtol=1e-6)
    assert np.all(np.diff(series.x) > 0)


def test_problem4_groups_by_config_and_averages_seeds(logged):
    logs, captured = logged
    data = build_report(load_runs(logs))
    (panel,) = figure(data, "problem4_ensemble_size").panels
    by_label = {s.label: s for s in panel.series}
    assert set(by_label) == {"ensemble_size=1", "ensemble_size=2 (default), 2 seeds"}
    seeds = np.array([captured["reacher_ablation"]["returns"], captured["reacher_ablation__seed=1"]["returns"]])
    default = by_label["ensemble_size=2 (default), 2 seeds"]
    np.testing.assert_allclose(default.x, [1, 2])
    np.testing.assert_allclose(default.y, seeds.mean(0), rtol=1e-6)
    np.testing.assert_allclose(default.lo, seeds.min(0), rtol=1e-6)
    np.testing.assert_allclose(default.hi, seeds.max(0), rtol=1e-6)
    single = by_label["ensemble_size=1"]
    one = captured["reacher_ablation__ensemble_size=1"]
    np.testing.assert_allclose(single.y, one["returns"], rtol=1e-6)
    np.testing.assert_allclose(single.hi[-1] - single.y[-1], one["return_std"], rtol=1e-5)  # ± episodes' std

    (panel,) = figure(data, "problem4_horizon").panels
    labels = [s.label for s in panel.series]
    assert labels == ["horizon=2", "horizon=3 (default), 2 seeds"]
    np.testing.assert_allclose(panel.series[0].y, captured["reacher_ablation__horizon=2"]["returns"], rtol=1e-6)
    assert not any(f.key == "problem4_num_sequences" for f in data.figures)
    assert any("num_sequences" in s for s in data.skipped)
    assert any(s.startswith("Problem 6") for s in data.skipped)


def test_other_runs_get_a_generic_figure(logged):
    logs, captured = logged
    data = build_report(load_runs(logs))
    (panel,) = figure(data, "run_my_experiment").panels
    np.testing.assert_allclose(panel.series[0].y, captured["reacher_ablation__horizon=2"]["returns"], rtol=1e-6)


def test_files_are_written(logged, tmp_path):
    logs, _ = logged
    data, md = make_report(logs, tmp_path / "out", verbose=False)
    for spec in data.figures:
        for ext in ("png", "pdf"):
            assert (tmp_path / "out" / f"{spec.key}.{ext}").stat().st_size > 1000
    text = md.read_text()
    for spec in data.figures:
        assert f"({spec.key}.png)" in text and spec.caption in text
    for name in ("reacher_ablation/version_0", "reacher_ablation__ensemble_size=1/version_0",
                 "my_experiment/version_0"):
        assert f"| {name} |" in text
    assert "## Skipped" in text and "## Final evaluation returns" in text


def test_default_output_folder_and_cli(logged, capsys):
    logs, _ = logged
    assert main([str(logs)]) == 0
    assert (logs / "report" / "report.md").is_file()
    assert "problem4_ensemble_size" in capsys.readouterr().out


def test_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["report", str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    assert "no TensorBoard event files" in capsys.readouterr().err
    assert main([str(tmp_path / "does_not_exist")]) == 2
    assert not (tmp_path / "empty" / "report").exists()


def test_problem3_and_problem5_read_names_and_planner_config(logged):
    logs, captured = logged
    data = build_report(load_runs(logs))
    (panel,) = figure(data, "problem3_multi_iter").panels  # only the panels whose runs exist
    assert panel.title == "halfcheetah_multi_iter"
    np.testing.assert_allclose(panel.series[0].y, captured["halfcheetah_multi_iter"]["returns"], rtol=1e-6)
    assert any("obstacles_multi_iter" in s and "reacher_multi_iter" in s for s in data.skipped)
    (panel,) = figure(data, "problem5_cem").panels
    baseline, cem, icem = panel.series
    assert cem.label == "CEM, 2 iterations"  # num_iterations from config.yaml
    np.testing.assert_allclose(cem.y, captured["halfcheetah_cem"]["returns"], rtol=1e-6)
    assert icem.label == "iCEM (halfcheetah_icem_tiny)"  # beyond the brief, drawn beside CEM
    assert "iCEM and MPPI runs (beyond the brief)" in figure(data, "problem5_cem").caption
    np.testing.assert_allclose(icem.y, captured["halfcheetah_icem_tiny"]["returns"], rtol=1e-6)
    assert baseline.label.startswith("random shooting") and list(baseline.x) == [1.0]  # cut to the runs drawn
    np.testing.assert_allclose(baseline.y, captured["halfcheetah_multi_iter"]["returns"][:1], rtol=1e-6)


def test_resumed_run_is_merged_with_the_run_it_continues(tmp_path):
    logs = tmp_path / "runs"
    config = tiny_config(logs, "obstacles_multi_iter", epochs=1)
    config["trainer"]["enable_checkpointing"] = True
    first = fit(tmp_path, config)
    (ckpt,) = (logs / "obstacles_multi_iter" / "version_0" / "checkpoints").glob("*.ckpt")
    config["trainer"]["max_epochs"] = 2
    # an explicit logger version: the resumed run logs to version_1 (without one it goes on in version_0)
    resumed = fit(tmp_path, config, "--ckpt_path", str(ckpt), "--trainer.logger.init_args.version", "1")
    assert (logs / "obstacles_multi_iter" / "version_1").is_dir()
    data = build_report(load_runs(logs))
    (panel,) = figure(data, "problem3_multi_iter").panels
    (series,) = panel.series
    assert series.label == "obstacles_multi_iter/version_0+1"
    np.testing.assert_allclose(series.x, [1, 2])
    np.testing.assert_allclose(series.y, first["returns"] + resumed["returns"][-1:], rtol=1e-6)


def test_standard_tasks_plot_pets_and_sac_against_env_steps(tmp_path):
    """Runs on a gymnasium task (Pendulum-v1: learned reward) share one figure, x = real env steps at evaluation,
    each line named by its method (PETS with its propagation, SAC)."""
    logs = tmp_path / "runs"
    pets = tiny_config(logs, "pets_pendulum")
    pets["data"]["init_args"]["env_id"] = "Pendulum-v1"
    pets["model"]["init_args"].update({"loss": "nll", "propagation": "ts_inf", "num_particles": 4})
    fit(tmp_path, pets)
    sac = tiny_config(logs, "sac_pendulum")
    sac["data"]["init_args"]["env_id"] = "Pendulum-v1"
    sac["model"] = {"class_path": "mbrl_lightning.agents.MBPO",
                    "init_args": {"rollout_length": 0, "hidden_size": 16}}
    fit(tmp_path, sac)
    data = build_report(load_runs(logs))
    fig = next(f for f in data.figures if f.problem == "Standard tasks")
    assert fig.key == "task_Pendulum_v1"
    labels = sorted(s.label for s in fig.panels[0].series)
    assert labels == ["PETS (TS-inf, 4 particles) [pets_pendulum]", "SAC [sac_pendulum]"]
    for series, name in zip(sorted(fig.panels[0].series, key=lambda s: s.label), ("pets_pendulum", "sac_pendulum"),
                            strict=True):
        acc = EventAccumulator(str(next((logs / name).glob("version_0")))).Reload()
        steps = [e.value for e in acc.Scalars("eval/env_steps")]
        returns = [e.value for e in acc.Scalars("eval/return")]
        np.testing.assert_allclose(series.x, steps)
        np.testing.assert_allclose(series.y, returns, rtol=1e-6)
    assert not any(f.problem == "Other runs" for f in data.figures)


def test_published_hopper_curves_pin_the_released_files():
    """Facts read from Kubo et al. 2025's CSVs (4kubo/erl_lib, commit 6d23b5b, results/main/gym/*/Hopper.csv)."""
    from mbrl_lightning.report.published import published_for

    mbpo, sac = sorted(published_for("Hopper-v5"), key=lambda c: c.method)
    assert (mbpo.method, sac.method) == ("MBPO", "SAC") and published_for("Hopper-v4") == [mbpo, sac]
    assert published_for("HalfCheetah-v5") == [] and published_for("Pendulum-v1") == []
    # mbpo/Hopper.csv: steps 0, 6019, 7019, ..., 125019 (the MBPO paper's 125 Hopper epochs), one kept row
    assert len(mbpo.rows) == 1 and mbpo.x[:3] == (0.0, 6019.0, 7019.0) and mbpo.x[-1] == 125019.0
    # its middle row at 100019 and 125019 steps: 3315.12 and 3279.78
    assert mbpo.rows[0][mbpo.x.index(100019.0)] == 3315.1 and mbpo.rows[0][-1] == 3279.8
    # sac/Hopper.csv: eight seeds; at 100000 steps 3073.9, 2843.4, 2466.8, 764.3, 2847.7, 3075.8, 3191.1, 3074.6
    assert len(sac.rows) == 8 and sac.x[:4] == (0.0, 5000.0, 10000.0, 20000.0) and sac.x[-1] == 130000.0
    at_100k = [row[sac.x.index(100000.0)] for row in sac.rows]
    assert at_100k == [3073.9, 2843.4, 2466.8, 764.3, 2847.7, 3075.8, 3191.1, 3074.6]
    assert sac.at(100000.0) == pytest.approx(np.mean(at_100k))
    with pytest.raises(ValueError, match="outside the published range"):
        sac.at(140000.0)


def test_gap_is_stated_at_our_last_evaluation_inside_the_published_range():
    """Linear between published points; evaluations past the published curve's end are not compared."""
    from mbrl_lightning.report.published import Ours, PublishedCurve, gap_lines

    curve = PublishedCurve("Toy", "MBPO", "Toy-v0", "a paper", "one row", (0.0, 1000.0, 2000.0),
                           ((0.0, 100.0, 300.0),))
    ours = [Ours("MBPO", "MBPO [a]", np.array([500.0, 1500.0, 2500.0]), np.array([10.0, 50.0, 400.0])),
            Ours("SAC", "SAC [b]", np.array([1000.0]), np.array([80.0]))]  # no published SAC: no line
    assert gap_lines([curve], ours) == ["MBPO [a]: 50 at 1500 env steps, published MBPO 200 there (25 % of it)"]
    notes = ["", " (1 of 2 seeds)", " (1 of 2 seeds)"]  # a note per point: how many seeds got there
    assert gap_lines([curve], [ours[0]._replace(notes=notes)]) == [
        "MBPO [a]: 50 at 1500 env steps (1 of 2 seeds), published MBPO 200 there (25 % of it)"]


def test_hopper_figure_draws_the_published_curve_of_each_method_run(tmp_path):
    """A SAC run on Hopper-v5 gets the published SAC curve (dashed, mean of 8 seeds with their band) and the gap
    in the caption; no published MBPO curve, as no MBPO run is there."""
    logs = tmp_path / "runs"
    sac = tiny_config(logs, "sac_hopper")
    sac["data"]["init_args"]["env_id"] = "Hopper-v5"
    sac["model"] = {"class_path": "mbrl_lightning.agents.MBPO", "init_args": {"rollout_length": 0, "hidden_size": 16}}
    fit(tmp_path, sac)
    data = build_report(load_runs(logs))
    fig = next(f for f in data.figures if f.problem == "Standard tasks")
    ours, published = fig.panels[0].series
    assert (ours.label, ours.style) == ("SAC [sac_hopper]", "-")
    assert (published.label, published.style) == ("SAC, published (Hopper-v4)", "--")
    assert published.lo is not None and np.all(published.lo <= published.y) and np.all(published.y <= published.hi)
    last = ours.x[-1]
    ref = np.interp(last, published.x, published.y)
    assert f"SAC [sac_hopper]: {ours.y[-1]:.0f} at {last:.0f} env steps, published SAC {ref:.0f} there" in fig.caption
    assert "Kubo et al. 2025" in fig.caption and "MBPO, published" not in fig.caption
    _, md = make_report(logs, tmp_path / "report", verbose=False)
    assert (md.parent / "task_Hopper_v5.png").stat().st_size > 0


def test_seeds_still_running_are_drawn_each_and_stated_with_how_many_got_there(tmp_path):
    """Two MBPO Hopper seeds, one ahead of the other: the mean line and band stop where the shorter seed stops,
    each seed is drawn on its own to its end, and the caption's final return and gap say "1 of 2 seeds" (no
    "highest final return" between lines that end at different env steps)."""
    import matplotlib.pyplot as plt

    from mbrl_lightning.report.published import published_for
    from mbrl_lightning.report.render import figure
    from mbrl_lightning.report.runs import Run

    def run(seed: int, returns: list[float]) -> Run:
        steps = np.arange(len(returns), dtype=float)
        env_steps = 10000.0 + 1000.0 * steps
        config = {"seed_everything": seed, "data": {"init_args": {"env_id": "Hopper-v5"}},
                  "model": {"class_path": "mbrl_lightning.agents.MBPO",
                            "init_args": {"rollout_schedule": [20, 150, 1, 15], "model_train_freq": 250}}}
        return Run(tmp_path / f"version_{seed}", "mbpo_hopper", seed, config,
                   {"eval/return": (steps, np.array(returns)), "eval/env_steps": (steps, env_steps)})

    data = build_report([run(0, [300.0, 500.0, 900.0, 2000.0]), run(1, [100.0, 300.0])])
    spec = next(f for f in data.figures if f.problem == "Standard tasks")
    ours = spec.panels[0].series[0]
    assert ours.unequal and ours.seeds_at(1) == "" and ours.seeds_at(-1) == " (1 of 2 seeds)"
    assert list(ours.y) == [200.0, 400.0, 900.0, 2000.0]
    ref = next(c for c in published_for("Hopper-v5") if c.method == "MBPO").at(13000.0)
    assert f"{ours.label} 2000 (1 of 2 seeds)" in spec.caption
    assert f"{ours.label}: 2000 at 13000 env steps (1 of 2 seeds), published MBPO {ref:.0f} there" in spec.caption
    assert "Thin lines: each seed" in spec.caption and "Highest final return" not in spec.caption
    fig = figure(spec)
    try:
        lines = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]
        mean, *seeds = lines
        assert list(mean.get_xdata()) == [10000.0, 11000.0] and list(mean.get_ydata()) == [200.0, 400.0]
        assert sorted(len(line.get_xdata()) for line in seeds) == [2, 4]
        assert all(line.get_color() == mean.get_color() for line in seeds)
        ends = {t.get_text(): t.xy for t in fig.axes[0].texts}  # each seed named at its last point
        assert ends == {"version_0": (13000.0, 2000.0), "version_1": (11000.0, 300.0)}
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][0] == ours.label
    finally:
        plt.close(fig)


def test_seeds_on_different_x_are_drawn_each_and_empty_groups_still_draw():
    """Seeds that end together but were evaluated at other x: each is drawn, the mean only where both have a point
    (no zigzag through single-seed points), while the final value is a mean over both. A group whose seeds logged
    nothing draws without error. A NaN return still counts as the seed's point."""
    import matplotlib.pyplot as plt

    from mbrl_lightning.report.figures import FigureSpec, Panel, aggregate
    from mbrl_lightning.report.render import figure

    a = (np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0, 5.0]), None)
    b = (np.array([0.0, 2.0, 3.0]), np.array([3.0, 6.0, 7.0]), None)
    grid = aggregate("g", [a, b], ["g/version_0", "g/version_1"])
    assert grid.partial and not grid.unequal and grid.seeds_at(-1) == "" and grid.seeds_at(1) == " (1 of 2 seeds)"
    empty = aggregate("e", [(np.array([]), np.array([]), None)] * 2, ["e/version_0", "e/version_1"])
    assert not empty.partial and not empty.unequal
    nan = aggregate("n", [a, (a[0], np.array([1.0, 2.0, np.nan]), None)], ["n/version_0", "n/version_1"])
    assert not nan.partial
    spec = FigureSpec("f", "f", "caption", [Panel("p", "x", "y", [grid, empty])])
    fig = figure(spec)
    try:
        mean, *seeds = [line for line in fig.axes[0].get_lines() if line.get_label() != "e"]
        assert list(mean.get_xdata()) == [0.0, 3.0] and list(mean.get_ydata()) == [2.0, 6.0]
        assert len(seeds) == 2
    finally:
        plt.close(fig)


def test_seeds_group_across_configs_that_differ_only_by_arguments_at_their_default(tmp_path):
    """A newer config.yaml writes new arguments at their class's default (sac_hopper's seeds 1-2 have
    ``checkpoint_model_buffer: true``, seed 0's config predates it): still one experiment. An argument off its
    default, or one whose type differs from the default's, still separates runs."""
    from mbrl_lightning.report.runs import Run, group_seeds

    def run(version, seed, **init_args):
        model = {"class_path": "mbrl_lightning.agents.MBPO", "init_args": {"rollout_length": 0, **init_args}}
        return Run(tmp_path / f"version_{version}", "sac_hopper", version, {"seed_everything": seed, "model": model})

    old, new = run(0, 0), run(1, 1, checkpoint_model_buffer=True, model_retain_epochs=None)
    off_default, other_type = run(2, 2, checkpoint_model_buffer=False), run(3, 3, checkpoint_model_buffer=1)
    groups, dropped = group_seeds([old, new, off_default, other_type])
    assert [[r.version for r in g] for g in groups] == [[0, 1], [2], [3]] and dropped == []


def test_logged_wall_time_sums_the_segments_of_a_run(tmp_path):
    """Wall time = per event file (a start or a resumption), last minus first event, summed over the files."""
    import time

    from torch.utils.tensorboard import SummaryWriter

    from mbrl_lightning.report import load_run

    t0 = time.time()
    for spans in ((100.0, 160.0), (5.0, 55.0)):  # two segments in one folder: 160 s and 55 s from their start
        writer = SummaryWriter(str(tmp_path / "run" / "version_0"), filename_suffix=f".{spans[1]}")
        for k, dt in enumerate(spans):
            writer.add_scalar("eval/return", float(k), k, walltime=t0 + dt)
        writer.close()
        t0 = time.time()
    run = load_run(tmp_path / "run" / "version_0")
    assert abs(run.wall_seconds - (160 + 55)) < 5, run.wall_seconds


def test_fit_start_is_logged_before_the_initial_data(logged):
    """ProgressReport writes an event at setup, so the logged span includes CollectRandom's work."""
    logs, _ = logged
    acc = EventAccumulator(str(logs / "reacher_ablation" / "version_0"), size_guidance={"scalars": 0})
    acc.Reload()
    start = acc.Scalars("time/fit_start")[0]
    first_data = acc.Scalars("data/env_steps")[0]
    assert start.step == 0 and start.wall_time <= first_data.wall_time


def test_event_reader_matches_tensorboard_and_skips_a_record_cut_short(tmp_path):
    """The report's own one-pass reader gives EventAccumulator's scalars (later file wins at a repeated step); a
    record cut short at the end of a file (a run killed while writing) is left out."""
    from torch.utils.tensorboard import SummaryWriter

    from mbrl_lightning.report.runs import read_events

    run = tmp_path / "run" / "version_0"
    for suffix, values in ((".a", {0: 1.0, 1: 2.0, 2: 3.0}), (".b", {2: 30.0, 3: 40.0})):
        writer = SummaryWriter(str(run), filename_suffix=suffix)
        for step, value in values.items():
            writer.add_scalar("eval/return", value, step)
            writer.add_scalar("train/loss", value / 10, step)
        writer.close()
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    scalars, wall, start = read_events(run)
    assert set(scalars) == set(acc.Tags()["scalars"]) == {"eval/return", "train/loss"}
    np.testing.assert_array_equal(scalars["eval/return"][0], [0, 1, 2, 3])
    np.testing.assert_allclose(scalars["eval/return"][1], [1.0, 2.0, 30.0, 40.0])
    assert wall >= 0 and start is not None
    last = sorted(run.glob("events.out.tfevents.*"))[-1]
    with open(last, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00partial")
    again, _, _ = read_events(run)
    np.testing.assert_allclose(again["eval/return"][1], scalars["eval/return"][1])


def test_a_renamed_run_is_not_merged_with_a_later_run_in_its_old_folder(tmp_path):
    """A run folder renamed after its resumptions still names its old folder in ``ckpt_path``; a newer run that
    now logs in that folder started later, so it is not the source of the renamed run's resumption."""
    from mbrl_lightning.report.runs import Run, merge_resumptions

    def run(name, version, start, ckpt=None):
        return Run(tmp_path / name / f"version_{version}", name, version, {"seed_everything": 0, "ckpt_path": ckpt},
                   start_time=start)

    renamed = run("mbpo_hopper_block", 0, 100.0, "results/mbpo_hopper/version_0/checkpoints/last.ckpt")
    newer = run("mbpo_hopper", 0, 500.0)
    runs, merged = merge_resumptions([renamed, newer])
    assert merged == [] and len(runs) == 2
    first, resumed = run("obstacles", 0, 100.0), run("obstacles", 1, 200.0, "runs/obstacles/version_0/last.ckpt")
    runs, merged = merge_resumptions([first, resumed])
    assert len(runs) == 1 and runs[0].merged_versions == [0, 1] and runs[0].start_time == 100.0


def test_tables_hold_what_the_runs_logged(logged):
    """The per-iteration table is the figure's series; the results table compares the final return with the
    brief's band."""
    from mbrl_lightning.report import build_tables
    from mbrl_lightning.report.tables import Band, fmt

    logs, captured = logged
    tables = {t.key: t for t in build_tables(build_report(load_runs(logs)))}
    problem3 = tables["problem3"]
    assert problem3.header == ["iteration", "halfcheetah_multi_iter"]
    returns = captured["halfcheetah_multi_iter"]["returns"]
    assert [row[1].split(" ± ")[0] for row in problem3.rows] == [fmt(r) for r in returns]
    (row,) = [r for r in tables["results"].rows if r[1] == "`halfcheetah_multi_iter`"]
    assert row[2] == "around 250-350" and row[3].startswith(fmt(returns[-1]))
    assert row[4] == Band("", 250, 350).verdict(returns[-1])
    assert row[5] == "[Problem 3]({fig}problem3_multi_iter.png)"
    assert "problem3_multi_iter.png" in tables["problem3"].markdown("docs/report/")
    assert (Band("", -70, None).verdict(-40), Band("", 250, 350).verdict(400), Band("", 800).verdict(584)) == (
        "inside", "above", "below")


def test_bf16_runs_are_set_beside_the_float32_runs_of_their_name(logged, tmp_path):
    """``bf16_<name>`` runs (issue 32's whole runs planning in bfloat16) get a column beside ``<name>``'s runs: the
    float32 run's returns, and the bf16 runs' mean (min to max) over their seeds."""
    from mbrl_lightning.report import build_tables
    from mbrl_lightning.report.tables import fmt

    logs, captured = logged
    shutil.copytree(logs / "halfcheetah_multi_iter", tmp_path / "halfcheetah_multi_iter")
    shutil.copytree(logs / "reacher_ablation" / "version_0", tmp_path / "bf16_halfcheetah_multi_iter" / "version_0")
    shutil.copytree(logs / "reacher_ablation__seed=1" / "version_0",
                    tmp_path / "bf16_halfcheetah_multi_iter" / "version_1")
    tables = {t.key: t for t in build_tables(build_report(load_runs(tmp_path)))}
    table = tables["bf16-runs"]
    assert table.header == ["iteration", "halfcheetah_multi_iter, float32",
                            "bf16_halfcheetah_multi_iter (2 seeds), bfloat16"]
    fp32 = captured["halfcheetah_multi_iter"]["returns"]
    seeds = np.array([captured["reacher_ablation"]["returns"], captured["reacher_ablation__seed=1"]["returns"]])
    assert [row[1].split(" ± ")[0] for row in table.rows] == [fmt(r) for r in fp32]
    assert [row[2] for row in table.rows] == [f"{fmt(m)} ({fmt(lo)} to {fmt(hi)})" for m, lo, hi in
                                              zip(seeds.mean(0), seeds.min(0), seeds.max(0), strict=True)]
    assert "bf16-runs" not in {t.key for t in build_tables(build_report(load_runs(logs)))}  # no bf16_ run there


def test_a_mean_over_seeds_says_how_many_seeds_reached_each_point():
    """Where only some seeds got as far (runs still going), the cell names how many, not a band of one."""
    from mbrl_lightning.report.figures import aggregate
    from mbrl_lightning.report.tables import _pm

    three = [(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]), None),
             (np.array([1.0, 2.0]), np.array([12.0, 24.0]), None),
             (np.array([1.0]), np.array([14.0]), None)]
    s = aggregate("mbpo", three, ["a/version_0", "a/version_1", "a/version_2"])
    assert [_pm(s, i) for i in range(3)] == ["12 (10 to 14)", "22 (20 to 24; 2 of 3 seeds)", "30 (1 of 3 seeds)"]


def test_gap_table_sets_published_means_and_reference_points_beside_ours():
    """At the gap steps: ours (with our share of the published mean of the same method), the published means
    (SAC with its seeds' min-max) and the side-by-side reference measurements, where their steps match."""
    from mbrl_lightning.report.figures import FigureSpec, Panel, ReportData, Series
    from mbrl_lightning.report.published import published_for, references_for
    from mbrl_lightning.report.tables import gap_tables

    ours = Series("SAC [sac_hopper (2 seeds)]", np.array([30000.0, 40000.0]), np.array([300.0, 310.0]),
                  np.array([290.0, 300.0]), np.array([310.0, 320.0]), ["sac_hopper/version_0", "sac_hopper/version_1"],
                  spread="min-max over 2 seeds")
    spec = FigureSpec("task_Hopper_v5", "Hopper", "", [Panel("Hopper-v5", "env steps", "eval return", [ours])],
                      "Standard tasks")
    (table,) = gap_tables(ReportData([spec], [], [], []))
    assert table.key == "gap-hopper"
    sac = next(c for c in published_for("Hopper-v5") if c.method == "SAC")
    refs = references_for("Hopper-v5")
    assert table.header[1] == ours.label and table.header[-len(refs):] == [r.label for r in refs]
    row = next(r for r in table.rows if r[0] == "30k")
    assert row[1] == f"300 (290 to 310); {100 * 300 / sac.at(30000.0):.0f} %"
    assert row[-len(refs):] == [r.cell(30000.0) for r in refs]
    assert row[-len(refs):-1] == ["304", "254", "339"]  # the SB3 seed 0, seed 1, 1000 then 1000 updates
    row = next(r for r in table.rows if r[0] == "100k")
    assert row[1] == "" and row[-len(refs):] == ["", "342", "", ""]
    assert "Stable-Baselines3 2.9 SAC" in table.note and "Kubo et al. 2025" in table.note


def test_references_measured_here_are_the_committed_measurement():
    """A reference measured in this repository quotes the CSVs its command wrote (rounded), at every gap step they
    give, one seed per CSV."""
    import csv

    from mbrl_lightning.report.published import GAP_STEPS, REFERENCES, SB3_HERE, SB3_HERE_LABEL

    here = next(r for r in REFERENCES if r.label == SB3_HERE_LABEL)
    assert here.headline and "results/sb3_sac_hopper/" in here.source
    assert len(here.seeds) == len(SB3_HERE) > 0
    for seed, points in SB3_HERE.items():
        with open(Path(__file__).resolve().parents[1] / "results" / "sb3_sac_hopper" / f"seed{seed}_step.csv") as f:
            measured = {float(row["env_steps"]): float(row["return_mean"]) for row in csv.DictReader(f)}
        assert all(ret == round(measured[steps]) for steps, ret in points)
        assert {steps for steps, _ in points} == set(measured) & set(GAP_STEPS)  # every gap step it measured


def test_reference_cells_give_mean_and_range_over_seeds():
    from mbrl_lightning.report.published import ReferencePoints

    ref = ReferencePoints("T", "SAC", "T-v0", "x", "s", (((1.0, 10.0), (2.0, 30.0)), ((1.0, 20.0),)))
    assert (ref.cell(1.0), ref.cell(2.0), ref.cell(3.0)) == ("15 (10 to 20)", "30 (1 of 2 seeds)", "")
    assert ref.returns_at(1.0) == [10.0, 20.0] and ref.returns_at(3.0) == []


def test_headline_table_keeps_the_current_configs_groups_only():
    """The README's headline table is the gap table restricted to ``HEADLINE_RUNS``: an earlier config's group
    (here ``mbpo_hopper_block``) stays in the gap table of the docs and out of the headline."""
    from mbrl_lightning.report.figures import FigureSpec, Panel, ReportData, Series
    from mbrl_lightning.report.published import references_for
    from mbrl_lightning.report.runs import Run
    from mbrl_lightning.report.tables import HEADLINE_RUNS, gap_tables

    assert {"mbpo_hopper", "sac_hopper"} <= set(HEADLINE_RUNS["Hopper"])
    x = np.array([30000.0, 40000.0])
    current = Series("MBPO [mbpo_hopper]", x, np.array([700.0, 900.0]), runs=["mbpo_hopper/version_0"])
    earlier = Series("MBPO [mbpo_hopper_block]", x, np.array([290.0, 280.0]), runs=["mbpo_hopper_block/version_0"])
    spec = FigureSpec("task_Hopper_v5", "Hopper", "", [Panel("Hopper-v5", "env steps", "eval return",
                                                             [current, earlier])], "Standard tasks")
    runs = [Run(Path(label), label.split("/")[0], 0, None) for label in (*current.runs, *earlier.runs)]
    data = ReportData([spec], [], [], runs)
    (gap,) = gap_tables(data)
    (headline,) = gap_tables(data, headline=True)
    assert gap.key == "gap-hopper" and headline.key == "headline-hopper"
    assert current.label in gap.header and earlier.label in gap.header
    assert current.label in headline.header and earlier.label not in headline.header
    assert headline.header[2:4] == gap.header[3:5]  # the published columns stay; of the references, those
    assert headline.header[4:] == [r.label for r in references_for("Hopper-v5") if r.headline]  # measured here
    row = next(r for r in headline.rows if r[0] == "30k")
    assert row[1].startswith("700; ")


def test_generated_blocks_are_rewritten_for_their_logdir_only(logged, tmp_path, monkeypatch, capsys):
    """``report LOGDIR`` rewrites the blocks that name LOGDIR (relative to the current folder), leaves the others,
    and refuses a block naming a table the runs do not give."""
    from mbrl_lightning.report import StaleBlockError

    logs, _ = logged
    monkeypatch.chdir(logs.parent)
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "page.md"
    page.write_text("# Page\n\n<!-- generated:problem3 logdir=runs -->\nold\n<!-- /generated -->\n\ntext\n\n"
                    "<!-- generated:problem3 logdir=elsewhere -->\nkept\n<!-- /generated -->\n")
    make_report(Path("runs"), tmp_path / "out", verbose=False, docs=[docs])
    text = page.read_text()
    assert "old" not in text and "| iteration | halfcheetah_multi_iter |" in text and "kept" in text
    assert "(../out/problem3_multi_iter.png)" in text  # figure links relative to the page
    before = text
    make_report(Path("runs"), tmp_path / "out", verbose=False, docs=[docs])
    assert page.read_text() == before  # unchanged logs, unchanged page
    page.write_text(before + "\n<!-- generated:no_such_table logdir=runs -->\n<!-- /generated -->\n")
    with pytest.raises(StaleBlockError, match="no_such_table"):
        make_report(Path("runs"), tmp_path / "out", verbose=False, docs=[docs])
    assert main(["runs", "--out", str(tmp_path / "out"), "--docs", str(docs)]) == 1
    assert "no_such_table" in capsys.readouterr().err
