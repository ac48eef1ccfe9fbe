"""Serving a released model over the Open Inference Protocol (V2), as KServe, MLServer and Triton do."""
