"""fairseq-shiftadd: ShiftAddNAS (arXiv 2205.08119) as a fairseq plugin.

fairseq itself is installed separately, from the community rebuild ``ve-fairseq==0.12.3`` with
``--no-deps`` (its metadata asks for torchaudio, which would pull another torch): see README.md
and ``scripts/install.sh``. Everything else fairseq needs is listed here.
"""
from setuptools import find_packages, setup

FAIRSEQ_NEEDS = [
    "hydra-core>=1.3.2",
    "omegaconf>=2.3",
    "bitarray",
    "regex",
    "sacrebleu>=2.0",
    "scikit-learn",
    "cython",
    "cffi",
    "tqdm",
    "packaging",
    "numpy",
]

setup(
    name="fairseq-shiftadd",
    version="0.1.0",
    description="ShiftAddNAS hybrid multiplication/shift/add networks as a fairseq plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["fairseq_shiftadd", "fairseq_shiftadd.*"]),
    include_package_data=True,
    # the CPU kernels' C++ sources, compiled at first use (g++ with OpenMP; the reference paths run without)
    package_data={"fairseq_shiftadd.cost": ["profiles/*.yaml"], "fairseq_shiftadd.ops.kernels": ["*.cpp", "*.h"]},
    install_requires=["torch>=2.1", "pyyaml", "sentencepiece", "sacremoses", "matplotlib", *FAIRSEQ_NEEDS],
    extras_require={
        # triton: its kernels are tested on the CPU through TRITON_INTERPRET=1 (Linux x86-64 wheels only)
        # pytest-xdist: scripts/test.sh runs one worker per core
        "test": ["pytest>=7", "pytest-xdist>=3",
                 "triton>=3.0; platform_system == 'Linux' and platform_machine == 'x86_64'"],
        "gpu": ["triton>=3.0"],
        "vision": ["torchvision"],
    },
    entry_points={
        "console_scripts": [
            "fairseq-shiftadd-prepare-multi30k = fairseq_shiftadd.prep.multi30k:main",
            "fairseq-shiftadd-prepare-wmt14 = fairseq_shiftadd.prep.wmt14:main",
            "fairseq-shiftadd-prepare-iwslt14 = fairseq_shiftadd.prep.iwslt14:main",
            "fairseq-shiftadd-average-checkpoints = fairseq_shiftadd.averaging:main",
            "fairseq-shiftadd-extract-subnet = fairseq_shiftadd.extract:main",
            "fairseq-shiftadd-search = fairseq_shiftadd.search.cli:main",
            "fairseq-shiftadd-rerank = fairseq_shiftadd.search.rerank:main",
            "fairseq-shiftadd-score = fairseq_shiftadd.scoring:main",
            "fairseq-shiftadd-latency-dataset = fairseq_shiftadd.latency.cli:dataset_main",
            "fairseq-shiftadd-train-latency-predictor = fairseq_shiftadd.latency.cli:train_main",
            "fairseq-shiftadd-cost = fairseq_shiftadd.cost.cli:main",
            "fairseq-shiftadd-vision-train = fairseq_shiftadd.vision.cli:train_main",
            "fairseq-shiftadd-vision-search = fairseq_shiftadd.vision.cli:search_main",
            "fairseq-shiftadd-vision-retrain = fairseq_shiftadd.vision.cli:retrain_main",
        ],
    },
)
