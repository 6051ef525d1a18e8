# embodied_vision: `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
# Each bootstraps .venv (torch 2.14.1 + torchvision 0.29.1, the rest from PyPI, pinned by
# constraints.txt) and, when run as root, the apt packages for headless rendering and open3d.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= sim,ros,language,clip,lerobot,dev
STAMP := $(VENV)/.installed-$(shell cat setup.py constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
APT_PACKAGES := libegl1 libegl-mesa0 libgl1 libgles2 libusb-1.0-0
PYTEST_ARGS ?=

export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: demo test lint test-long test-gpu bench install system-deps lock clean eval-mbs \
	eval-lang4sim2real machine-info test-portability eval-nerf-mae eval-i2p-mae \
	train-demo-policy

# Closed loop sim_node + encoder_node + policy_node in one process, then the encoder report.
demo: $(STAMP)
	$(VENV)/bin/embodied-vision demo --out demo_output

test: $(STAMP) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The CPU, its ISA, the kernels PyTorch picked and the numeric libraries' versions.
machine-info: $(STAMP)
	@$(PY) tests/machine_info.py

# The whole suite three times, one line per run: as is; on lower kernels
# (ATEN_CPU_CAPABILITY one level down, ONEDNN_MAX_CPU_ISA=AVX2); with every core busy
# (stress-ng). Not part of `make test` (three times as long).
test-portability: $(STAMP)
	@command -v stress-ng >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; \
		then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng; \
		else echo "test-portability needs stress-ng: sudo apt-get install stress-ng"; exit 1; fi; }
	$(PY) tests/portability.py $(PYTEST_ARGS)

# Long training / evaluation runs (not part of `make test`).
test-long: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# GPU tests (TensorRT/fp16 parity, CUDA runtimes); skipped without CUDA.
test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/encoders.py

# Long run (not part of `make test`): Manipulate-by-Seeing vs behaviour cloning on the same
# noisy wrist-camera videos of each task in MBS_TASKS, closed loop from goal images, 3 seeds x
# 50 episodes per task; results in $(MBS_RUN)/<task>/. Two BC baselines: `bc_mlp` on frozen
# R3M embeddings (the R3M protocol; without official R3M weights its encoder is random) and
# `bc_e2e`, the FiLM-ResNet BC policy trained end to end on the same frames (single domain).
# MBS_TASKS=Reach is a quick sanity check of the planner (use MBS_STEP=0.02 there: the
# tolerance is 2 cm).
# Smoke-size it with e.g. `make eval-mbs MBS_VIDEOS=2 MBS_STEPS=4 MBS_SIZE=32 EVAL_EPISODES=1`.
CLI := $(VENV)/bin/embodied-vision
MBS_TASKS ?= PickPlace Push
# 300 videos: with 60, MbS overfits (Reach, 64 px, step 600: val direction cos 0.67, train
# top-1 0.31 vs val 0.02; 4% closed loop); with 300 the same run reaches 0.97 and 20%.
MBS_VIDEOS ?= 300
MBS_STEPS ?= 5000
MBS_SIZE ?= 128
# The official loss scores every direction in the videos (MBS_POOL=null): ~13k candidates for
# 300 Push videos, ~4.5 s per step at 64 px on one CPU core. The CPU protocol of our tables is
# MBS_POOL=512 (a farthest-point subset) with MBS_TEMPERATURE=0.1 (logits = cosine / 0.1).
MBS_POOL ?= null
MBS_TEMPERATURE ?= null
MBS_STEP ?= 0.04
# the MbS backbone (the paper: r3m_resnet18). On CPU, lang4sim2real_resnet18 (the narrow
# ResNet-18 that bc_e2e uses) trains ~3x faster: PickPlace, 300 videos, 64 px, pool 512,
# 4000 steps in ~45 min on one contended core, 6% closed loop (r3m_resnet18 after 600
# steps: 0%).
MBS_ENCODER ?= r3m_resnet18
# PickPlace's object, for the videos and the evaluation (the paper's pick-place has one);
# empty draws one of three per episode (the planner must then read it off the goal image:
# 4-6% closed loop, against 13% for carrot). Measured tables, per task and training seed,
# with their protocol: results/README.md.
MBS_PICK_TARGET ?= carrot
EVAL_EPISODES ?= 50
EVAL_SEEDS ?= 0 1 2
MBS_RUN ?= runs/mbs_eval
eval-mbs: $(STAMP)
	for t in $(MBS_TASKS); do \
		collect_option=; evaluate_option=; \
		if [ $$t = PickPlace ] && [ -n "$(MBS_PICK_TARGET)" ]; then \
			collect_option=+task_kwargs.target_object=$(MBS_PICK_TARGET); \
			evaluate_option="--task-option target_object=$(MBS_PICK_TARGET)"; fi; \
		$(CLI) collect task=$$t n=$(MBS_VIDEOS) cameras=[wrist] size=$(MBS_SIZE) depth=false \
			expert_noise=0.3 progress=false out=$(MBS_RUN)/$$t/videos.hdf5 $$collect_option && \
		$(CLI) train experiment=mbs_pickplace name=mbs_$$t task.videos=[$(MBS_RUN)/$$t/videos.hdf5] \
			task.image_size=$(MBS_SIZE) task.resize_to=$$(( $(MBS_SIZE) * 15 / 14 )) \
			task.max_pool_size=$(MBS_POOL) task.temperature=$(MBS_TEMPERATURE) \
			task.step_size=$(MBS_STEP) task.encoder=$(MBS_ENCODER) \
			trainer.max_steps=$(MBS_STEPS) \
			hydra.run.dir=$(MBS_RUN)/$$t/mbs && \
		$(CLI) train experiment=bc_mlp name=bc_$$t task.episodes=[$(MBS_RUN)/$$t/videos.hdf5] \
			task.camera=wrist task.image_size=$(MBS_SIZE) trainer.max_steps=$(MBS_STEPS) \
			hydra.run.dir=$(MBS_RUN)/$$t/bc && \
		$(CLI) train experiment=lang4sim2real_bc name=bc_e2e_$$t task.sim_episodes=[] \
			task.real_episodes=[$(MBS_RUN)/$$t/videos.hdf5] task.target_domain=sim \
			task.policy.camera=wrist task.policy.image_size=$(MBS_SIZE) \
			task.policy.freeze_pretrained=false trainer.batch_size=32 \
			trainer.max_steps=$(MBS_STEPS) hydra.run.dir=$(MBS_RUN)/$$t/bc_e2e && \
		$(CLI) evaluate mbs=$(MBS_RUN)/$$t/mbs/policy bc_mlp=$(MBS_RUN)/$$t/bc/policy \
			bc_e2e=$(MBS_RUN)/$$t/bc_e2e/policy --task $$t $$evaluate_option \
			--episodes $(EVAL_EPISODES) --seeds $(EVAL_SEEDS) --video $(MBS_RUN)/$$t/episode.gif \
			--plot $(MBS_RUN)/$$t/mbs_vs_bc.png --json $(MBS_RUN)/$$t/mbs_vs_bc.json \
			|| exit 1; done

install: $(STAMP)

# robomimic's dataset loaders, for the test that they read our episode files; its own
# dependencies (egl_probe builds from source, tensorboard) are not needed to read datasets.
NO_DEPS_PACKAGES = robomimic==0.3.0 termcolor==3.3.0

$(STAMP): setup.py constraints.txt
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --prefer-binary -c constraints.txt -e '.[$(EXTRAS)]'
	$(PY) -m pip install -q --no-deps $(NO_DEPS_PACKAGES)
	@rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing apt packages: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "NOTE: headless rendering (MuJoCo EGL) and open3d need: $$missing"; \
		echo "      install them with: sudo apt-get install $$missing"; \
	fi

# Re-pin constraints.txt to what is installed now (after a deliberate upgrade).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^embodied.vision' > constraints.txt

clean:
	rm -rf $(VENV) build install log *.egg-info demo_output

# Long run: the Lang4Sim2Real table. Many sim demos of three tasks, a few real-domain demos
# of the target task (L4S_TARGET, default PickPlace); five arms x training seeds, evaluated in
# the real domain, with each pretraining arm's difference to (c) and (d) and its 95% interval:
# (a) language regression pretraining, (b) language distance pretraining, (c) no pretraining,
# target demos only, (d) no pretraining, sim + target, (e) domain-randomised sim + target.
# Smoke-size it with e.g. `make eval-lang4sim2real L4S_SIM=1 L4S_REAL=1 L4S_SIZE=32
# L4S_PRE_STEPS=2 L4S_BC_STEPS=2 L4S_SEEDS=0 EVAL_EPISODES=1`.
L4S_SIM ?= 100
L4S_REAL ?= 20
L4S_SIZE ?= 128
L4S_PRE_STEPS ?= 3000
L4S_PRE_BATCH ?= 256
# sentence similarity of the language-distance targets: the official no-BLEURT fallback. On
# Push (64 px, batch 32) it aligned the held-out domains in 500 steps (stage retrieval 0.96);
# the library default, min-max cosine, was still at chance (0.52) after 1500.
L4S_SIMILARITY ?= minilm_softmax
L4S_BC_STEPS ?= 20000
L4S_BATCH ?= 228
L4S_SEEDS ?= 0 1 2
L4S_TASKS ?= PickPlace Stack Push
L4S_TARGET ?= PickPlace
L4S_RUN ?= runs/lang4sim2real
# episodes of the language-distance policy closed loop through sim_node + policy_node
L4S_LOOP_EPISODES ?= 5
L4S_COLLECT = $(CLI) collect n=$(L4S_SIM) cameras=[front] size=$(L4S_SIZE) depth=false \
	progress=false
L4S_BC = $(CLI) train experiment=lang4sim2real_bc task.policy.image_size=$(L4S_SIZE) \
	trainer.max_steps=$(L4S_BC_STEPS) trainer.batch_size=$(L4S_BATCH) trainer.progress=false
eval-lang4sim2real: $(STAMP)
	for t in $(L4S_TASKS); do \
		$(L4S_COLLECT) task=$$t domain=sim out=$(L4S_RUN)/data/$${t}_sim.hdf5 && \
		$(L4S_COLLECT) task=$$t domain=sim domain_randomization=true \
			out=$(L4S_RUN)/data/$${t}_dr.hdf5 || exit 1; done
	$(CLI) collect task=$(L4S_TARGET) domain=real n=$(L4S_REAL) cameras=[front] \
		size=$(L4S_SIZE) depth=false progress=false out=$(L4S_RUN)/data/$(L4S_TARGET)_real.hdf5
	sim=$$(for t in $(L4S_TASKS); do printf '%s,' $(L4S_RUN)/data/$${t}_sim.hdf5; done); \
	dr=$$(for t in $(L4S_TASKS); do printf '%s,' $(L4S_RUN)/data/$${t}_dr.hdf5; done); \
	real=$(L4S_RUN)/data/$(L4S_TARGET)_real.hdf5; \
	for objective in regression distance; do \
		$(CLI) train experiment=lang4sim2real_pretrain task.sim_episodes=[$${sim%,}] \
			task.real_episodes=[$$real] task.objective=$$objective \
			task.similarity=$(L4S_SIMILARITY) \
			task.image_size=$(L4S_SIZE) trainer.max_steps=$(L4S_PRE_STEPS) \
			trainer.batch_size=$(L4S_PRE_BATCH) \
			trainer.progress=false hydra.run.dir=$(L4S_RUN)/pretrain_$$objective || exit 1; done; \
	for seed in $(L4S_SEEDS); do \
		for objective in regression distance; do \
			$(L4S_BC) seed=$$seed task.sim_episodes=[$${sim%,}] task.real_episodes=[$$real] \
				task.policy.encoder_checkpoint=$(L4S_RUN)/pretrain_$$objective/encoder \
				hydra.run.dir=$(L4S_RUN)/$${objective}_$$seed || exit 1; done; \
		$(L4S_BC) seed=$$seed task.sim_episodes=[] task.real_episodes=[$$real] \
			task.policy.freeze_pretrained=false \
			hydra.run.dir=$(L4S_RUN)/target_only_$$seed || exit 1; \
		$(L4S_BC) seed=$$seed task.sim_episodes=[$${sim%,}] task.real_episodes=[$$real] \
			task.policy.freeze_pretrained=false \
			hydra.run.dir=$(L4S_RUN)/sim_target_$$seed || exit 1; \
		$(L4S_BC) seed=$$seed task.sim_episodes=[$${dr%,}] task.real_episodes=[$$real] \
			task.policy.freeze_pretrained=false \
			hydra.run.dir=$(L4S_RUN)/domain_rand_$$seed || exit 1; done
	$(CLI) evaluate $(foreach s,$(L4S_SEEDS),lang_regression=$(L4S_RUN)/regression_$(s)/policy \
		lang_distance=$(L4S_RUN)/distance_$(s)/policy target_only=$(L4S_RUN)/target_only_$(s)/policy \
		sim_target=$(L4S_RUN)/sim_target_$(s)/policy domain_rand=$(L4S_RUN)/domain_rand_$(s)/policy) \
		--task $(L4S_TARGET) --domain real --episodes $(EVAL_EPISODES) --seeds 0 \
		$(foreach a,lang_regression lang_distance,$(foreach b,target_only sim_target,--compare $(b) $(a))) \
		--plot $(L4S_RUN)/table.png --json $(L4S_RUN)/table.json
	$(CLI) pipeline launch/config/lang4sim2real.yaml --episodes $(L4S_LOOP_EPISODES) \
		--set policy_node.policy_path=$(L4S_RUN)/distance_$(firstword $(L4S_SEEDS))/policy \
		--set sim_node.image_width=$(L4S_SIZE) --set sim_node.image_height=$(L4S_SIZE) \
		--set sim_node.task=$(L4S_TARGET) --json $(L4S_RUN)/closed_loop_ros.json

# Long run (not part of `make test`): CroCo pretraining vs random init for two-view depth
# (stereo_left/right pairs) and relative pose (overlapping pairs) on held-out scenes, small CPU
# model (64x64, patch 8); same steps and data for both arms; table in $(GEO_RUN)/table.json.
# Smoke-size it with e.g. `make eval-croco-geometry GEO_PAIRS=8 GEO_STEREO=4 GEO_HELDOUT=4
# GEO_PRE_STEPS=2 GEO_DEPTH_STEPS=2 GEO_POSE_STEPS=2 GEO_RUN=/tmp/geo_smoke`.
.PHONY: eval-croco-geometry
GEO_PAIRS ?= 1600
GEO_STEREO ?= 600
GEO_HELDOUT ?= 200
GEO_PRE_STEPS ?= 2000
GEO_DEPTH_STEPS ?= 500
GEO_POSE_STEPS ?= 1000
GEO_RUN ?= runs/croco_geometry
# one thread per run: small models run several times faster than on two contended threads
GEO_THREADS ?= 1
GEO_ARCH := patch_size=8 enc_embed_dim=96 enc_depth=4 enc_num_heads=3 dec_embed_dim=96 \
	dec_depth=3 dec_num_heads=3
GEO_HEAD := +task.head_kwargs.dpt_layer_dims=[24,48,96,96] +task.head_kwargs.dpt_feature_dim=32 \
	+task.head_kwargs.dpt_last_dim=16 +task.head_kwargs.pose_hidden=128
GEO_STEREO_CAMS := 'camera_pairs=[[stereo_left,stereo_right]]' camera_pos=0 camera_rot=0 \
	max_overlap=1.0 pairs_per_scene=1
GEO_TRAIN = OMP_NUM_THREADS=$(GEO_THREADS) $(CLI) train trainer.batch_size=32 \
	trainer.progress=false
# columns of the final table (held-out metrics of each run's summary.json)
GEO_TABLE_KEYS := abs_rel delta1 ref_abs_rel rot_err_median_deg rot_err_mean_deg \
	trans_err_median_deg ref_rot_err_median_deg ref_trans_err_median_deg
# a downstream head on the pretrained ($$ckpt = the export) or random (null) backbone
GEO_HEAD_TRAIN = $(GEO_TRAIN) task.backbone_checkpoint=$$ckpt task.backbone_kwargs.img_size=[64,64] \
	$(addprefix +task.backbone_kwargs.,$(GEO_ARCH)) $(GEO_HEAD) trainer.eval_every=250 \
	trainer.checkpoint_every=250 optimizer.lr=3e-4 scheduler.warmup_steps=50
eval-croco-geometry: $(STAMP)
	mkdir -p $(GEO_RUN)/data
	$(CLI) view-pairs n=$(GEO_PAIRS) size=64 seed=0 progress=false \
		out=$(GEO_RUN)/data/general_train.hdf5
	$(CLI) view-pairs n=$(GEO_HELDOUT) size=64 seed=100000 progress=false \
		out=$(GEO_RUN)/data/general_heldout.hdf5
	$(CLI) view-pairs n=$(GEO_STEREO) size=64 seed=200000 progress=false $(GEO_STEREO_CAMS) \
		out=$(GEO_RUN)/data/stereo_train.hdf5
	$(CLI) view-pairs n=$$(( ($(GEO_HELDOUT) * 3 + 3) / 4 )) size=64 seed=300000 \
		progress=false $(GEO_STEREO_CAMS) out=$(GEO_RUN)/data/stereo_heldout.hdf5
	$(GEO_TRAIN) experiment=croco_pretrain hydra.run.dir=$(GEO_RUN)/pretrain \
		task.pairs=[$(GEO_RUN)/data/general_train.hdf5,$(GEO_RUN)/data/stereo_train.hdf5] \
		task.model_kwargs.img_size=64 $(addprefix +task.model_kwargs.,$(GEO_ARCH)) \
		task.eval_pairs=128 trainer.max_steps=$(GEO_PRE_STEPS) trainer.eval_every=500 \
		trainer.checkpoint_every=500 optimizer.lr=5e-4 scheduler.warmup_steps=100
	for arm in pretrained random; do \
		ckpt=null; [ $$arm = pretrained ] && ckpt=$(GEO_RUN)/pretrain/encoder; \
		$(GEO_HEAD_TRAIN) experiment=croco_stereo_depth hydra.run.dir=$(GEO_RUN)/depth_$$arm \
			task.pairs=[$(GEO_RUN)/data/stereo_train.hdf5] \
			task.val_pairs=[$(GEO_RUN)/data/stereo_heldout.hdf5] \
			trainer.max_steps=$(GEO_DEPTH_STEPS) || exit 1; \
		$(GEO_HEAD_TRAIN) experiment=croco_relative_pose hydra.run.dir=$(GEO_RUN)/pose_$$arm \
			task.pairs=[$(GEO_RUN)/data/general_train.hdf5] \
			task.val_pairs=[$(GEO_RUN)/data/general_heldout.hdf5] \
			trainer.max_steps=$(GEO_POSE_STEPS) || exit 1; done
	$(CLI) runs $(GEO_RUN)/depth_pretrained $(GEO_RUN)/depth_random $(GEO_RUN)/pose_pretrained \
		$(GEO_RUN)/pose_random --keys $(GEO_TABLE_KEYS) --json $(GEO_RUN)/table.json

# NeRF-MAE: pretraining on sim grids, then voxel labelling fine-tuned from the pretrained and
# from a random backbone, with few and all labelled scenes, NERF_SEEDS each; table with
# bootstrap intervals. Protocol and figures: results/README.md (about 2.5 h on 2 cores).
NERF_RUN ?= runs/nerf_mae_eval
NERF_SCENES ?= 200
NERF_PRE_STEPS ?= 1200
NERF_FT_STEPS ?= 100
NERF_FEW ?= 8
NERF_SEEDS ?= 0 1 2
eval-nerf-mae: $(STAMP)
	$(CLI) grids n=$(NERF_SCENES) resolution=64 seed=0 progress=false out=$(NERF_RUN)/grids
	$(CLI) train experiment=nerf_mae_pretrain task.root=$(NERF_RUN)/grids trainer.batch_size=2 \
		trainer.max_steps=$(NERF_PRE_STEPS) trainer.eval_every=200 optimizer.lr=1e-3 \
		trainer.progress=false hydra.run.dir=$(NERF_RUN)/pretrain
	for seed in $(NERF_SEEDS); do for labels in $(NERF_FEW) null; do \
		for arm in random pretrained; do \
		ckpt=null; [ $$arm = pretrained ] && ckpt=$(NERF_RUN)/pretrain/encoder; \
		$(CLI) train experiment=nerf_mae_semantics task.root=$(NERF_RUN)/grids seed=$$seed \
			task.backbone_checkpoint=$$ckpt task.labelled_scenes=$$labels \
			trainer.max_steps=$(NERF_FT_STEPS) trainer.eval_every=0 trainer.progress=false \
			hydra.run.dir=$(NERF_RUN)/semantics_$${arm}_$${labels}_s$$seed || exit 1; \
		done; done; done
	for labels in $(NERF_FEW) null; do \
		$(CLI) compare-semantics --arm random=$(NERF_RUN)/semantics_random_$${labels}_s* \
			--arm pretrained=$(NERF_RUN)/semantics_pretrained_$${labels}_s* \
			--compare random pretrained --json $(NERF_RUN)/semantics_$${labels}.json \
			|| exit 1; done

# The demo's learned policy: Reach expert episodes (front camera, 64 px, noisy execution), the
# narrow ResNet-18 and a bc_mlp head trained end to end (experiment=bc_mlp_e2e), scored closed
# loop on the held-out evaluation seeds; encoder/ + policy/ + eval.json land in DEMO_POLICY.
DEMO_RUN ?= runs/demo_policy
DEMO_POLICY ?= embodied_vision/demo_policy
DEMO_EPISODES ?= 200
DEMO_STEPS ?= 3000
train-demo-policy: $(STAMP)
	$(CLI) collect task=Reach n=$(DEMO_EPISODES) 'cameras=[front]' size=64 depth=false \
		expert_noise=0.3 progress=false out=$(DEMO_RUN)/reach.hdf5
	$(CLI) train experiment=bc_mlp_e2e task.episodes=[$(DEMO_RUN)/reach.hdf5] \
		trainer.max_steps=$(DEMO_STEPS) trainer.progress=false hydra.run.dir=$(DEMO_RUN)/train
	$(CLI) evaluate $(DEMO_RUN)/train/policy --task Reach --episodes 50 --seeds 0 \
		--json $(DEMO_RUN)/eval.json
	rm -rf $(DEMO_POLICY) && mkdir -p $(DEMO_POLICY) && \
		cp -r $(DEMO_RUN)/train/encoder $(DEMO_RUN)/train/policy $(DEMO_RUN)/eval.json $(DEMO_POLICY)/

# I2P-MAE / Point-M2AE: procedural shapes (full + partial), a small CroCo pretrained on sim
# views as the frozen 2D guide, both pretraining variants for I2P_SEEDS, the linear-SVM table
# (random init / Point-M2AE / I2P-MAE, full and partial clouds) and fine-tuning on the partial
# scans (from scratch / from each pretraining), each with paired bootstrap intervals; the SVM
# also scores the 2D guide on its own depth-view features (what the student could learn).
# CPU size: the tiny preset (256 points; ~0.6 s per pretraining step at batch 32 on 2 cores;
# small is ~4 s): 76-97 min on 2 cores (two runs; shapes 1 min, guide + 6 pretrainings ~24 min,
# SVM ~3 min, 9 fine-tunings ~50-66 min). I2P_SIZE=small for the larger model.
I2P_RUN ?= runs/i2p_mae_eval
I2P_SIZE ?= tiny
I2P_POINTS = $(if $(filter tiny,$(I2P_SIZE)),256,1024)
I2P_PER_CLASS ?= 60
I2P_GUIDE_STEPS ?= 300
I2P_PRE_STEPS ?= 300
I2P_FT_STEPS ?= 200
I2P_SEEDS ?= 0 1 2
I2P_SEED_LIST ?= 0,1,2
I2P_TRAIN = $(CLI) train trainer.progress=false
eval-i2p-mae: $(STAMP)
	$(CLI) shapes out=$(I2P_RUN)/shapes n_per_class=$(I2P_PER_CLASS) partial=true progress=false
	$(CLI) view-pairs n=1600 size=64 seed=0 progress=false out=$(I2P_RUN)/pairs.hdf5
	$(I2P_TRAIN) experiment=croco_pretrain hydra.run.dir=$(I2P_RUN)/guide \
		task.pairs=[$(I2P_RUN)/pairs.hdf5] task.model_kwargs.img_size=64 \
		$(addprefix +task.model_kwargs.,$(GEO_ARCH)) task.eval_pairs=128 trainer.batch_size=32 \
		trainer.max_steps=$(I2P_GUIDE_STEPS) trainer.eval_every=500 optimizer.lr=5e-4 \
		scheduler.warmup_steps=100
	for seed in $(I2P_SEEDS); do \
		$(I2P_TRAIN) experiment=i2p_mae_pretrain task.root=$(I2P_RUN)/shapes seed=$$seed \
			task.model=i2p_mae_pretrain_$(I2P_SIZE) trainer.eval_every=$(I2P_PRE_STEPS) \
			trainer.max_steps=$(I2P_PRE_STEPS) hydra.run.dir=$(I2P_RUN)/m2ae_s$$seed || exit 1; \
		$(I2P_TRAIN) experiment=i2p_mae_pretrain task.root=$(I2P_RUN)/shapes seed=$$seed \
			task.guide=vit task.guide_checkpoint=$(I2P_RUN)/guide/encoder task.image_size=64 \
			task.splat=3 trainer.max_steps=$(I2P_PRE_STEPS) task.model=i2p_mae_pretrain_$(I2P_SIZE) \
			trainer.eval_every=$(I2P_PRE_STEPS) \
			hydra.run.dir=$(I2P_RUN)/i2p_s$$seed || exit 1; done
	$(CLI) eval-svm --arm random=random:i2p_mae_pretrain_$(I2P_SIZE):$(I2P_SEED_LIST) \
		--arm point_m2ae='$(I2P_RUN)/m2ae_s?/encoder' --arm i2p_mae='$(I2P_RUN)/i2p_s?/encoder' \
		--arm croco_guide=guide:$(I2P_RUN)/guide/encoder:64:3:$(I2P_POINTS) \
		--data full=$(I2P_RUN)/shapes/modelnet40_ply_hdf5_2048 \
		--data partial=$(I2P_RUN)/shapes/main_split --compare random point_m2ae \
		--compare random i2p_mae --compare point_m2ae i2p_mae --compare i2p_mae croco_guide \
		--json $(I2P_RUN)/svm.json
	for seed in $(I2P_SEEDS); do for arm in scratch m2ae i2p; do \
		ckpt=null; [ $$arm != scratch ] && ckpt=$(I2P_RUN)/$${arm}_s$$seed/encoder; \
		backbone=i2p_mae_$(I2P_SIZE); [ $$arm != scratch ] && backbone=i2p_mae_pretrain_$(I2P_SIZE); \
		$(I2P_TRAIN) experiment=i2p_mae_finetune task.root=$(I2P_RUN)/shapes seed=$$seed \
			task.backbone=$$backbone task.backbone_checkpoint=$$ckpt \
			trainer.max_steps=$(I2P_FT_STEPS) trainer.eval_every=0 \
			hydra.run.dir=$(I2P_RUN)/finetune_$${arm}_s$$seed || exit 1; done; done
	$(CLI) compare-accuracy --arm scratch='$(I2P_RUN)/finetune_scratch_s?' \
		--arm point_m2ae='$(I2P_RUN)/finetune_m2ae_s?' --arm i2p_mae='$(I2P_RUN)/finetune_i2p_s?' \
		--compare scratch point_m2ae --compare scratch i2p_mae --json $(I2P_RUN)/finetune.json
