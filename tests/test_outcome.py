"""Symptoms graded by what they did to the outcome: a problem where the primary metric stalled or worsened,
modes were lost or G's own gradient vanished; a note where the run kept improving; ungraded without a
metric to judge by; and not_learned for a 2-D run whose samples are not near the data."""

from gan_lightning.diagnostics import outcome as O
from gan_lightning.diagnostics.diagnosis import markdown, summary_values


def rows(n: int, every: int = 1, **columns) -> list[dict[str, str]]:
    """n log rows at G steps 10, 20, ...; a column's list gives its values at the rows ``every`` apart."""
    out = [{"progress/g_steps": str(10 * (i + 1))} for i in range(n)]
    for key, values in columns.items():
        key = key.replace("__", "/")
        step = every if not key.startswith(("d/", "grad_norm/")) else 1
        for j, v in enumerate(values):
            out[min(n - 1, (j + 1) * step - 1) if step > 1 else j][key] = str(v)
    return [{k: r.get(k, "") for k in set().union(*out)} for r in out]


SATURATED = dict(d__acc=[0.6] + [0.999] * 6 + [0.8] * 13, d__jsd_estimate=[0.1] + [0.68] * 6 + [0.3] * 13)


def test_saturation_through_which_fid_kept_falling_is_a_note_and_the_run_healthy():
    # the default run: D saturates early (G steps 20-70), FID falls 45 -> 9.7 over the four evaluations
    found = O.assess(rows(20, every=5, **SATURATED, fid__lenet_5k=[45.0, 26.2, 13.5, 9.7]), {"loss": "nonsaturating"})
    assert [(v.name, v.severity) for v in found] == [("d_saturation", O.NOTE)]
    assert O.status(found) == "healthy (notes: d_saturation)"
    assert "kept improving" in found[0].outcome and "fid/lenet_5k 45 at G step 50 -> 9.7 at G step 200" in found[0].outcome
    assert "as Arjovsky & Bottou expect under the -log D cost" in found[0].outcome
    values = summary_values(found)
    assert values["diagnosis/verdict"] == "healthy (notes: d_saturation)" and values["diagnosis/d_saturation"] == 0
    assert values["diagnosis/notes"] == "d_saturation"
    text = markdown(found, "default")
    assert "## Notes" in text and "## Problems" not in text and "Flags that address it" not in text


def test_saturation_after_which_fid_stalled_is_a_problem():
    found = O.assess(rows(20, every=5, **SATURATED, fid__lenet_5k=[300.0, 301.0, 299.0, 300.0]), {"loss": "minimax"})
    assert [(v.name, v.severity) for v in found] == [("d_saturation", O.PROBLEM)]
    assert O.status(found) == "d_saturation" and "stalled or worsened" in found[0].outcome
    assert summary_values(found)["diagnosis/d_saturation"] == 1


def test_without_a_quality_metric_a_symptom_is_ungraded_and_says_what_was_missing():
    found = O.assess(rows(20, **SATURATED), {"loss": "nonsaturating"})
    assert found[0].severity == O.UNGRADED and "no quality metric was logged" in found[0].outcome
    assert O.status(found) == "inconclusive (ungraded: d_saturation)"
    # one measurement at the end shows no trend either
    found = O.assess(rows(20, every=20, **SATURATED, fid__lenet_5k=[40.0]), {"loss": "nonsaturating"})
    assert found[0].severity == O.UNGRADED and "fid/lenet_5k was measured once from G step 20 on" in found[0].outcome


def test_a_vanishing_minimax_gradient_is_a_problem_only_when_g_trains_on_that_cost():
    norms = dict(grad_norm__g_minimax=[1.0, 2.0, 1e-3, 1e-3, 1e-3, 1e-3])
    trained = O.assess(rows(6, **norms), {"loss": "minimax"})
    shadow = O.assess(rows(6, **norms), {"loss": "nonsaturating"})
    assert [(v.name, v.severity) for v in trained] == [("vanishing_gradient", O.PROBLEM)]
    assert [(v.name, v.severity) for v in shadow] == [("vanishing_gradient", O.NOTE)]
    assert O.status(shadow) == "healthy (notes: vanishing_gradient)"
    # feature matching trains G on D's features: the minimax cost is only measured then
    assert O.assess(rows(6, **norms), {"loss": "minimax", "g_objective": "feature_matching"})[0].severity == O.NOTE


def test_lost_modes_and_a_rising_fid_are_problems_whatever_else():
    collapse = O.assess(rows(4, modes_covered__1k=[2, 8, 8, 3], high_quality__1k=[0.5, 0.8, 0.8, 0.9]), {}, num_modes=8)
    assert [(v.name, v.severity) for v in collapse] == [("mode_collapse", O.PROBLEM)]
    risen = O.assess(rows(4, fid__lenet_5k=[80, 40, 30, 46]), {})
    assert [(v.name, v.severity) for v in risen] == [("divergence", O.PROBLEM)]


def test_a_2d_run_whose_samples_are_not_near_the_data_has_not_learned():
    blob = rows(3, modes_covered__2_5k_ema=[0, 0, 0], high_quality__2_5k_ema=[0.01, 0.02, 0.009])
    found = O.assess(blob, {}, num_modes=8)
    assert [v.name for v in found] == ["not_learned"] and O.status(found) == "not_learned"
    assert "0 of 8 modes covered, 0.9% of the samples near a mode at G step 30" in found[0].evidence
    learned = rows(3, modes_covered__2_5k=[4, 7, 8], high_quality__2_5k=[0.5, 0.7, 0.85])
    assert O.status(O.assess(learned, {}, num_modes=8)) == "healthy"


def test_the_primary_metric_is_the_one_samples_come_from():
    both = rows(4, fid__lenet_5k=[50, 40, 30, 20], fid__lenet_5k_ema=[45, 35, 25, 15], fid__lenet_1k=[60])
    outcome = O.primary(both)
    assert outcome.key == "fid/lenet_5k_ema" and outcome.better == "min"
    assert O.primary(rows(2, ssl__test_error=[0.3, 0.2], ssl__test_error_live=[0.3, 0.25])).key == "ssl/test_error"
    assert O.primary(rows(2, loss__d=[1, 2])) is None


def test_a_cross_entropy_of_a_hundred_is_an_explosion_but_a_critic_of_that_size_is_not():
    # ring at Adam lr 1 (the corpus's ring-exploding-1-s0): D's BCE loss 1.6e3 at G step 10, then back to 0.5
    spiked = rows(6, loss__d=[1580.0, 598.0, 77.8, 8.5, 0.8, 0.5], loss__g=[824.0, 30.0, 7.0, 3.0, 1.1, 1.2])
    found = O.assess(spiked, {"loss": "nonsaturating"})
    assert [(v.name, v.severity) for v in found] == [("divergence", O.PROBLEM)]
    assert "loss/d reached 1.58e+03 at G step 10" in found[0].evidence and "--loss nonsaturating" in found[0].evidence
    assert O.status(O.assess(spiked, {"loss": "wasserstein_gp"})) == "healthy"  # a critic's values have no scale
    calm = rows(6, loss__d=[1.4, 1.2, 0.9, 0.8, 0.7, 0.5], loss__g=[0.7, 2.0, 3.0, 9.6, 11.0, 8.0])
    assert O.status(O.assess(calm, {"loss": "minimax"})) == "healthy"
