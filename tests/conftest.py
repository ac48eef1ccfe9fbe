import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as params.yaml runtime pins them for the stages
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
