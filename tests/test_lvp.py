"""Learned visual prompts (seed 004) and the red circle: the objective, the paste, training, files, the engine hook."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from core.errors import WeightsError
from core.method import lvp
from core.method import lvp_train as lt
from core.method.prompts import Prompt
from core.synthetic.training_images import folder_pool, synthetic_pool


@pytest.fixture(scope="module")
def demo_engine():
    from core.method.engine import load_engine

    return load_engine("demo", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def pool():
    return synthetic_pool(96, 24, lt.TRAIN_SCENE_SEED)


# ---------------------------------------------------------------------------------------------------------
# the objective


def test_gaussian_target_matches_hand_computed_values():
    g = lvp.gaussian_target(torch.tensor([[1, 1]]), (3, 3), sigma=1.0).reshape(3, 3)
    e1, e2 = math.exp(-0.5), math.exp(-1.0)
    z = 1 + 4 * e1 + 4 * e2
    want = torch.tensor([[e2, e1, e2], [e1, 1.0, e1], [e2, e1, e2]]) / z
    torch.testing.assert_close(g, want)
    # Off-centre, at a corner, sigma 2: G(0, 1) / G(0, 0) = exp(-1 / 8).
    g = lvp.gaussian_target(torch.tensor([[0, 0]]), (2, 3), sigma=2.0)
    assert g.shape == (1, 6) and abs(float(g.sum()) - 1) < 1e-6
    assert abs(float(g[0, 1] / g[0, 0]) - math.exp(-1 / 8)) < 1e-6
    assert abs(float(g[0, 4] / g[0, 0]) - math.exp(-2 / 8)) < 1e-6  # row 1, col 1


def test_kl_loss_matches_hand_computed_values():
    a = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    g = torch.tensor([[0.25, 0.5, 0.25], [0.2, 0.3, 0.5]])
    # KL(G || A) = 0.25 ln(0.25/0.5) + 0.5 ln(0.5/0.25) + 0 = 0.25 ln 2 for row 0, 0 for row 1; batch mean.
    torch.testing.assert_close(lvp.kl_loss(a, g), torch.tensor(0.25 * math.log(2) / 2))
    # Zero target entries contribute nothing (0 log 0 = 0).
    torch.testing.assert_close(lvp.kl_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]])),
                               torch.tensor(math.log(2)))


def test_token_under_and_overlaid_tokens():
    t = lvp.token_under(torch.tensor([[0.0, 0.0], [15.9, 8.0], [200.0, -3.0]]), (12, 12), 8)
    assert t.tolist() == [[0, 0], [1, 1], [0, 11]]
    cells = lvp.overlaid_tokens(lvp.Placement(12.0, 12.0, 8, 8), (12, 12), 8, 96)  # pixels 8..15
    assert cells.sum() == 1 and cells[1, 1]
    cells = lvp.overlaid_tokens(lvp.Placement(13.0, 2.0, 8, 8), (12, 12), 8, 96)  # x 9..16, y clipped 0..5
    assert np.argwhere(cells.numpy()).tolist() == [[0, 1], [0, 2]]


# ---------------------------------------------------------------------------------------------------------
# shapes and the paste


def test_shape_masks_are_hollow_with_the_ratio():
    circle = lvp.shape_mask("circle", 8, 0.5).int().tolist()
    assert circle == [
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1, 1, 1],
        [1, 1, 0, 0, 0, 0, 1, 1],
        [1, 1, 0, 0, 0, 0, 1, 1],
        [1, 1, 1, 0, 0, 1, 1, 1],
        [0, 1, 1, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
    ]
    square = lvp.shape_mask("square", 6, 0.5)
    want = torch.ones(6, 6)
    want[2:4, 2:4] = 0  # Chebyshev distance 0.5 < 0.5 * 3
    torch.testing.assert_close(square, want)
    assert lvp.shape_mask("square", 5, 0.0).all()  # ratio 0: filled
    with pytest.raises(Exception, match="circle or square"):
        lvp.shape_mask("star", 5, 0.5)
    with pytest.raises(Exception, match="ratio"):
        lvp.shape_mask("circle", 5, 1.0)


def test_paste_is_pixel_exact_and_clips_at_borders():
    x = torch.zeros(3, 3, 10, 10)
    patch = torch.arange(1, 1 + 3 * 16, dtype=torch.float32).reshape(3, 4, 4)
    mask = torch.ones(4, 4)
    mask[0, 0] = 0  # a hole: the image shows through
    # centre (5, 5): origin floor(5 - 2 + 0.5) = 3, pixels 3..6; centre (0.2, 9.9): origin (-2, 8), clipped.
    out = lvp.paste(x, patch, mask, [[5.0, 5.0], [0.2, 9.9], [-40.0, 3.0]])
    want0 = torch.zeros(3, 10, 10)
    want0[:, 3:7, 3:7] = patch * mask
    torch.testing.assert_close(out[0], want0)
    want1 = torch.zeros(3, 10, 10)
    want1[:, 8:10, 0:2] = (patch * mask)[:, 0:2, 2:4]
    torch.testing.assert_close(out[1], want1)
    torch.testing.assert_close(out[2], x[2])  # entirely outside: unchanged
    assert x.abs().sum() == 0  # the input is not modified
    # A partial mask blends: x (1 - M) + P M.
    half = lvp.paste(torch.ones(1, 3, 10, 10), torch.zeros(3, 4, 4), torch.full((4, 4), 0.25), [[5.0, 5.0]])
    assert float(half[0, 0, 4, 4]) == 0.75 and float(half[0, 0, 0, 0]) == 1.0


def test_paste_passes_gradients_to_the_patch_only_where_it_lands():
    patch = torch.zeros(3, 4, 4, requires_grad=True)
    lvp.paste(torch.zeros(1, 3, 10, 10), patch, torch.ones(4, 4), [[0.2, 9.9]]).sum().backward()
    grad = patch.grad[0]
    assert grad[0:2, 2:4].eq(1).all() and grad.sum() == 4


def test_red_circle_outline():
    ring = lvp.ellipse_outline(20, 10.0, 10.0, 6.0, 6.0, 2.0)
    assert ring[10, 4] and ring[10, 15] and ring[4, 10]  # on the circle (pixel centres at distance 5.5)
    assert not ring[10, 10] and not ring[10, 8] and not ring[0, 0]
    x = torch.zeros(1, 3, 20, 20)
    out = lvp.RedCircle(thickness=2).apply(x, [lvp.Placement(10.0, 10.0, 12.0, 12.0)], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out[0, 0][ring].eq(1).all() and out[0, 1:][:, ring].eq(0).all()
    assert out[0, :, ~ring].eq(0).all()


def test_marker_placement_for_points_and_boxes():
    red, prompt = lvp.RedCircle(), lvp.LearnedPrompt(torch.rand(3, 24, 24), "circle", 0.5)
    # A 200 x 100 photo into a 96 x 96 input: x * 0.48, y * 0.96.
    pl = prompt.placement(Prompt.from_point(100, 50), (200, 100), 96)
    assert pl == lvp.Placement(48.0, 48.0, 24.0, 24.0)
    assert pl.in_image((200, 100), 96) == (100.0, 50.0, 50.0, 25.0)
    box = Prompt.from_box(20, 10, 120, 60)  # input: x 9.6..57.6, y 9.6..57.6
    assert prompt.placement(box, (200, 100), 96) == lvp.Placement(33.6, 33.6, 48.0, 48.0)
    pl = red.placement(Prompt.from_box(0, 0, 100, 25), (200, 100), 96)
    assert pl == lvp.Placement(24.0, 12.0, 48.0, 24.0)
    assert red.placement(Prompt.from_point(0, 0), (200, 100), 96).width == 24.0  # S / 4


# ---------------------------------------------------------------------------------------------------------
# training


def test_training_lowers_the_loss_and_leaves_the_vit_unchanged(demo_engine, pool, tmp_path):
    torch.set_num_threads(1)
    before = {k: v.clone() for k, v in demo_engine.model.state_dict().items()}
    cfg = lt.TrainConfig(steps=15, batch=12, gain_images=0, seed=3, lr=3e-3)
    n = cfg.resolved_size(8, 96)
    # A fixed held-out batch, scored with the untrained prior and with the trained patch.
    idx, centres = lt.step_batch(pool, lt.TrainConfig(batch=16, seed=99), 0, 96)
    x = lt.normalise(pool.batch(idx), demo_engine)
    mask = lvp.shape_mask(cfg.shape, n, cfg.ratio)
    with torch.no_grad():
        loss0, on0 = lt.batch_objective(demo_engine, lvp.NeuralPrior(n, seed=cfg.seed), mask, x, centres, cfg.sigma)
    reports = []
    prompt = lt.train_prompt(demo_engine, pool, cfg, tmp_path / "p.safetensors", progress=reports.append)
    prior = lvp.NeuralPrior(n)
    from safetensors.torch import load_file

    prior.load_state_dict({k[6:]: v for k, v in load_file(str(tmp_path / "p.safetensors")).items() if k.startswith("prior.")})
    with torch.no_grad():
        loss1, on1 = lt.batch_objective(demo_engine, prior, mask, x, centres, cfg.sigma)
        torch.testing.assert_close(prior(), prompt.patch)
    assert float(loss1) < float(loss0) - 0.2, (float(loss0), float(loss1))
    assert float(on1.mean()) > float(on0.mean()) + 0.02, (float(on0.mean()), float(on1.mean()))
    assert [r.step for r in reports] == list(range(1, 16))
    for k, v in demo_engine.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in demo_engine.model.parameters())
    assert not (tmp_path / "p.ckpt").exists()  # removed once the prompt is written


def test_cancel_writes_a_checkpoint_and_a_rerun_resumes_exactly(demo_engine, pool, tmp_path):
    torch.set_num_threads(1)
    cfg = lt.TrainConfig(steps=4, batch=4, gain_images=0, checkpoint_every=100)
    whole = lt.train_prompt(demo_engine, pool, cfg, tmp_path / "whole.safetensors")
    out = tmp_path / "cut.safetensors"
    with pytest.raises(lt.TrainCancelled, match="step 2 of 4"):
        lt.train_prompt(demo_engine, pool, cfg, out, cancel=iter([False, True]).__next__)
    assert (tmp_path / "cut.ckpt").is_file() and not out.exists()
    reports = []
    resumed = lt.train_prompt(demo_engine, pool, cfg, out, progress=reports.append)
    assert [r.step for r in reports] == [3, 4] and reports[0].resumed_from == 2
    torch.testing.assert_close(resumed.patch, whole.patch)  # same batches, same result
    # Other settings do not resume from that checkpoint.
    assert lt._load_checkpoint(tmp_path / "cut.ckpt", {"other": 1}) is None


# ---------------------------------------------------------------------------------------------------------
# files


def test_prompt_file_round_trips_and_is_refused_for_another_model(demo_engine, tmp_path):
    from core.method.engine import load_engine

    meta = {"fingerprint": demo_engine.fingerprint(), "final_loss": 1.5, "steps": 7}
    prompt = lvp.LearnedPrompt(torch.rand(3, 20, 20), "square", 0.4, meta)
    path = prompt.save(tmp_path / "x.safetensors", lvp.NeuralPrior(20))
    back = lvp.LearnedPrompt.load(path, demo_engine)
    torch.testing.assert_close(back.patch, prompt.patch)
    assert (back.shape, back.ratio, back.size, back.meta["final_loss"]) == ("square", 0.4, 20, 1.5)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["fingerprint"]["model"] == "demo" and side["shape"] == "square"

    other = load_engine("deit3-s16", pretrained=False, device="cpu",
                        model_kwargs={"img_size": 32, "depth": 2, "embed_dim": 48, "num_heads": 2})
    with pytest.raises(WeightsError) as err:
        lvp.LearnedPrompt.load(path, other)
    msg = str(err.value)
    assert "trained for the model 'demo'" in msg and "phs lvp train --model deit3-s16" in msg
    assert "\n" not in msg and msg.count(". ") == 0 and msg.endswith(".")


def test_per_model_file_in_the_data_dir_wins_over_the_shipped_one(demo_engine):
    shipped = lvp.find_prompt(demo_engine)
    assert shipped is not None and "attention_gain" in shipped.meta  # resources/lvp_demo.*
    own = lvp.prompt_path(demo_engine)
    assert own.parent.name == lvp.PROMPTS_FOLDER and own.name.startswith("demo-")
    lvp.LearnedPrompt(torch.rand(3, 16, 16), "circle", 0.3, {"fingerprint": demo_engine.fingerprint()}).save(own)
    assert lvp.find_prompt(demo_engine).size == 16
    assert [m["size"] for _, m in lvp.list_prompts("demo")][0] == 16
    assert lvp.list_prompts("clip-b16") == []


def test_require_prompt_says_how_to_train_one():
    from core.errors import WeightsNotFoundError
    from core.method.engine import load_engine

    tiny = load_engine("deit3-s16", pretrained=False, device="cpu",
                       model_kwargs={"img_size": 32, "depth": 2, "embed_dim": 48, "num_heads": 2})
    with pytest.raises(WeightsNotFoundError, match="phs lvp train --model deit3-s16"):
        lvp.require_prompt(tiny)


# ---------------------------------------------------------------------------------------------------------
# the engine hook


def test_engine_marks_the_photo_caches_each_placement_and_returns_to_the_plain_photo(demo_engine):
    from core.synthetic.scenes import generate_scene

    photo = generate_scene(1, 3, (160, 120)).image
    e = demo_engine
    e.set_image(photo)
    plain = e.feature()
    forwards = e.counters.forwards
    marker = lvp.LearnedPrompt(torch.rand(3, 24, 24), "circle", 0.5)
    prompt = Prompt.from_point(80, 60)
    pl = e.set_marked_image(prompt, marker)
    assert pl == lvp.Placement(48.0, 48.0, 24.0, 24.0) and e.counters.forwards == forwards + 1
    marked = e.feature()
    assert np.abs(marked - plain).max() > 1e-3
    assert e.image_size == (160, 120)  # prompts still map through the photo's own size
    sel = e.select_heads(prompt, h_on=2)  # lvp+phs: heads scored on the marked photo
    assert sel.head_mask.shape == (e.num_heads,) and e.attention_maps().shape == (e.num_heads, 12, 12)
    # The marked input is exactly the paste of the photo's input.
    x, _ = lvp.mark_input(e.preprocess(e.to_pil(photo)), prompt, (160, 120), marker, e.mean, e.std)
    torch.testing.assert_close(torch.from_numpy(e.encode_batch(x[None]).features[0]), torch.from_numpy(marked))
    e.set_marked_image(prompt, marker)  # same placement: from the cache
    assert e.counters.forwards == forwards + 2  # (+1 only for encode_batch above)
    e.set_image(photo)  # back to the plain photo, from the cache
    assert e.counters.forwards == forwards + 2
    np.testing.assert_array_equal(e.feature(), plain)
    e.set_marked_image(Prompt.from_box(10, 10, 90, 70), lvp.RedCircle())
    assert np.abs(e.feature() - plain).max() > 1e-3


def test_attention_gain_is_relative_to_the_unmarked_attention(demo_engine, pool):
    x = lt.normalise(pool.batch(torch.arange(4)), demo_engine)
    pls = [lvp.Placement(30.0, 40.0, 24.0, 24.0)] * 4
    g = lvp.attention_gain(demo_engine, lvp.RedCircle(), x, pls)
    assert len(g["gain"]) == 4
    for gain, w, wo in zip(g["gain"], g["with"], g["without"]):
        assert gain == pytest.approx((w - wo) / wo, rel=1e-2, abs=1e-3)

    class Invisible:
        def apply(self, xb, placements, mean, std):
            return xb

    assert lvp.attention_gain(demo_engine, Invisible(), x, pls)["gain"] == [0.0] * 4


# ---------------------------------------------------------------------------------------------------------
# the command line


def test_cli_train_writes_files_and_a_killed_run_resumes(tmp_path, capsys, monkeypatch):
    from core.cli import main
    from core.paths import data_dir

    args = ["lvp", "train", "--model", "demo", "--images", "synthetic", "--steps", "3", "--scenes", "8",
            "--batch", "4", "--gain-images", "4", "--checkpoint-every", "1", "--threads", "1", "--quiet"]
    calls = {"n": 0}
    real = lt.batch_objective

    def dies_on_third_step(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the process were killed
        return real(*a, **k)

    monkeypatch.setattr(lt, "batch_objective", dies_on_third_step)
    assert main(args) == 130
    folder = data_dir() / lvp.PROMPTS_FOLDER
    assert [p.suffix for p in folder.iterdir()] == [".ckpt"]
    calls["n"] = -100
    assert main(args[:-1]) == 0
    assert calls["n"] == -99  # one step left after the checkpoint at step 2
    err = capsys.readouterr()
    assert "Resuming from" in err.err and "Wrote " in err.out and "red circle" in err.out
    files = sorted(p.name for p in folder.iterdir())
    assert [f.rsplit(".", 1)[1] for f in files] == ["json", "safetensors"]
    meta = json.loads((folder / files[0]).read_text())
    assert meta["steps"] == 3 and len(meta["attention_gain"]["lvp"]) == 4
    assert main(["lvp", "info", "--model", "demo"]) == 0
    assert files[1] in capsys.readouterr().out


def test_cli_errors_are_one_sentence(capsys, tmp_path):
    from core.cli import main

    assert main(["lvp", "train", "--model", "demo", "--images", str(tmp_path / "nope"), "--steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["lvp", "train", "--model", "demo", "--images", "synthetic", "--ratio", "1.5"]) == 2
    assert "ratio" in capsys.readouterr().err
    assert main(["lvp", "info", "--model", "clip-b16"]) == 2
    assert "No learned prompt for the model 'clip-b16'" in capsys.readouterr().err


def test_model_card_keeps_the_shipped_prompt_section(tmp_path):
    import shutil

    from core.paths import resources_dir
    from core.synthetic.train_demo import write_model_card

    for name in ("demo_model.json", "lvp_demo.json"):
        shutil.copy(resources_dir() / name, tmp_path / name)
    cfg = json.loads((tmp_path / "demo_model.json").read_text())
    card = write_model_card(cfg, tmp_path).read_text()
    meta = json.loads((tmp_path / "lvp_demo.json").read_text())
    assert "## Learned visual prompt (seed 004)" in card and f"| learned prompt | {meta['eval_loss']['lvp']} |" in card
    shipped = (resources_dir() / "MODEL_CARD.md").read_text()
    assert card[card.index("## Learned visual prompt"):card.index("## Every attempt")] in shipped


def test_folder_pool_squash_resizes_photos_and_survives_a_broken_one(tmp_path):
    from PIL import Image

    from tests.conftest import random_image

    Image.fromarray(random_image(64, 40, seed=1)).save(tmp_path / "a.png")
    Image.fromarray(random_image(30, 50, seed=2)).save(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").write_bytes(b"not a photo")
    pool = folder_pool(tmp_path, 32)
    assert len(pool) == 3
    batch = pool.batch(torch.tensor([0, 1, 2, 0]))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.uint8
    want = np.asarray(Image.open(tmp_path / "a.png").convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(batch[0].permute(1, 2, 0).numpy(), want)
    assert batch[2].eq(127).all()  # unreadable: a grey image, the run goes on
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="holds no photo"):
        folder_pool(tmp_path / "empty", 32)
