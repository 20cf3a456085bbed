"""One-off check that the issue-20 branch's training run can be taken over by this code.

The branch ``issue20`` trained its demo model with the code layout before the region encoder
(``rgpt_model/configs/demo.yaml`` there); this repository has its recipe as
``rgpt_model/configs/demo_v2.yaml``. Each side loads a copy of the run's
``checkpoint-last`` with one code tree and writes what it computes: the training batch of the
checkpoint's next step, the loss parts on it, region features and logits on synthetic scenes
(square and 4:3), the exported model's describe/refer answers, and two resumed steps::

    PYTHONPATH=/path/to/issue20-worktree python scripts/issue20_port_check.py side i20 OUT_A CKPT
    PYTHONPATH=.                          python scripts/issue20_port_check.py side port OUT_B CKPT
    PYTHONPATH=. python scripts/issue20_port_check.py compare OUT_A OUT_B

``compare`` passes when the batches are equal, features/logits/parameters agree within 1e-5
and the answers are the same. Set PYTHONDONTWRITEBYTECODE=1 to leave the other tree as it is.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch


def side(code: str, out: Path, ckpt: Path) -> None:
    import rgpt_model

    print(code, "code:", rgpt_model.__file__, flush=True)
    from rgpt_model.data.synthetic import SceneConfig, generate_scene
    from rgpt_model.predictor import RGPTPredictor
    from rgpt_model.training.config import load_config
    from rgpt_model.training.trainer import Trainer

    root = Path(rgpt_model.__file__).parent.parent
    config = {"i20": root / "rgpt_model/configs/demo.yaml",
              "port": root / "rgpt_model/configs/demo_v2.yaml"}[code]
    run = out / "run"
    shutil.rmtree(out, ignore_errors=True)
    (run).mkdir(parents=True)
    shutil.copytree(ckpt, run / "checkpoint-last")
    overrides = [f"output_dir={run}", f"model.warm_start.path={root / 'rgpt_model/demo_model_v1'}",
                 "data_workers=0", "log_every=1"]
    cfg = load_config(config, overrides)
    trainer = Trainer(cfg, progress=False)
    assert trainer.load_checkpoint()
    step = trainer.step
    print("resumed at", step, "stage", trainer.stage_index, flush=True)
    res = {"step": step}
    model = trainer.model
    stage = cfg.stages[trainer.stage_index]

    # 1. the training batch of the next step (data equality: can the port take over the run?)
    batch, n_turns = trainer.make_batch(step, 0)
    res["batch"] = {k: v.clone() for k, v in batch.items()}

    # 2. loss parts on it (train mode, as in training)
    model.train()
    with torch.no_grad():
        if code == "i20":
            total, parts = trainer.loss(batch, stage)
        else:
            total, parts = trainer.objective(batch, cfg.stage_aux_losses(stage), stage.lm_loss)
            parts = {k: float(v) for k, v in parts.items()}
    res["loss_total"] = float(total)
    res["loss_parts"] = parts
    model.eval()

    # 3. region features and logits on synthetic scenes (square and 4:3)
    proc = trainer.processor
    feats = []
    with torch.no_grad():
        for i, (h, w) in enumerate([(128, 128), (240, 320), (480, 640), (128, 128)]):
            scene = generate_scene(0, i, "test", SceneConfig(height=h, width=w))
            ids = [r.id for r in scene.regions]
            stack = np.stack([scene.labels == k for k in ids])
            pv, tf = proc.preprocess_image(scene.image)
            masks = proc.preprocess_masks(stack, tf)
            enc = model.encode_regions if code == "i20" else model.region_encoder
            g, r = enc(pv, masks)
            feats.append({"global": g, "region": r, "pixel_values": pv, "masks": masks})
        b = batch
        logits = model(input_ids=b["input_ids"], pixel_values=b["pixel_values"], masks=b["masks"],
                       attention_mask=b["attention_mask"],
                       region_image_index=b["region_image_index"],
                       region_feature_index=b["region_feature_index"],
                       sample_image_index=b["sample_image_index"]).logits
    res["features"] = feats
    res["logits"] = logits

    # 4. exported model's answers
    export = trainer.export(out / "export")
    pred = RGPTPredictor.from_pretrained(export)
    answers = []
    for i, (h, w) in enumerate([(128, 128), (240, 320), (128, 128), (128, 128)]):
        scene = generate_scene(0, 10 + i, "test", SceneConfig(height=h, width=w))
        desc = pred.describe(scene.image, scene.labels, max_new_tokens=12)
        answers.append([(d.region_id, d.label, round(float(d.label_score), 5), d.caption)
                        for d in desc])
        for e in scene.expressions[:2]:
            rr = pred.refer(scene.image, scene.labels, e.text, max_new_tokens=8)
            answers.append([e.text, list(rr.matched_ids), rr.raw_answer])
    res["answers"] = answers
    (out / "answers.json").write_text(json.dumps(answers, indent=1))

    # 5. two resumed training steps (a fresh trainer, resumed from the copy)
    trainer2 = Trainer(cfg, progress=False)
    trainer2.train(resume=True, stop_at=step + 2)
    res["resumed_losses"] = [(h["step"], h["loss"], h["parts"]) for h in trainer2.history[-2:]]
    res["resumed_params"] = {k: v.clone() for k, v in trainer2.model.state_dict().items()}
    print("resumed steps", res["resumed_losses"], flush=True)
    torch.save(res, out / "result.pt")
    print("done", flush=True)


def compare(dir_a: str, dir_b: str) -> int:
    from rgpt_model.data.synthetic_dense_aux import batch_cell_targets

    a = torch.load(Path(dir_a) / "result.pt", weights_only=False)
    b = torch.load(Path(dir_b) / "result.pt", weights_only=False)
    out = {"step": (a["step"], b["step"])}
    # batch: the port adds object_masks (exact masks) instead of the branch's cell_targets
    ka, kb = set(a["batch"]), set(b["batch"])
    out["batch_keys_only_i20"] = sorted(ka - kb)
    out["batch_keys_only_port"] = sorted(kb - ka)
    out["batch_equal"] = all(torch.equal(a["batch"][k], b["batch"][k]) for k in ka & kb)
    if "cell_targets" in a["batch"]:
        grid = a["batch"]["cell_targets"].shape[-1]
        out["cell_targets_equal"] = torch.equal(batch_cell_targets(b["batch"], grid),
                                                a["batch"]["cell_targets"])
    out["loss_total"] = (a["loss_total"], b["loss_total"])
    out["loss_total_absdiff"] = abs(a["loss_total"] - b["loss_total"])
    out["loss_parts"] = (a["loss_parts"], b["loss_parts"])
    md = 0.0
    for fa, fb in zip(a["features"], b["features"], strict=True):
        for k in ("global", "region", "pixel_values", "masks"):
            md = max(md, float((fa[k] - fb[k]).abs().max()))
    out["features_max_abs_diff"] = md
    out["logits_max_abs_diff"] = float((a["logits"] - b["logits"]).abs().max())
    out["answers_equal"] = a["answers"] == b["answers"]
    out["resumed_losses"] = (a["resumed_losses"], b["resumed_losses"])
    pa = {("region_encoder." + k if k.split(".")[0] in ("vision_tower", "refiner", "mask_encoder",
                                                        "mask_position", "pixel_branch") else k): v
          for k, v in a["resumed_params"].items()}
    pb = b["resumed_params"]
    out["resumed_param_keys_equal"] = set(pa) == set(pb)
    out["resumed_params_max_abs_diff"] = max(float((pa[k] - pb[k]).abs().max()) for k in pb)
    print(json.dumps(out, indent=1, default=str))
    ok = (out["batch_equal"] and out.get("cell_targets_equal", True) and md <= 1e-5
          and out["logits_max_abs_diff"] <= 1e-5 and out["answers_equal"]
          and out["resumed_params_max_abs_diff"] <= 1e-5)
    print("KEY CHECK", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "side":
        side(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        raise SystemExit(compare(sys.argv[2], sys.argv[3]))
