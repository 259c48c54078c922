"""GPU accelerators on Kubernetes: the resource name, GKE's node label and the taint.

Shared by the launchers (training pods) and the KServe deploy (predictor pods), so a GPU
request lands on the same node pool in both.
"""

from __future__ import annotations

# GKE's node label value for each accelerator (cloud.google.com/gke-accelerator).
GKE_ACCELERATORS = {
    "NVIDIA_TESLA_K80": "nvidia-tesla-k80",
    "NVIDIA_TESLA_P100": "nvidia-tesla-p100",
    "NVIDIA_TESLA_V100": "nvidia-tesla-v100",
    "NVIDIA_TESLA_P4": "nvidia-tesla-p4",
    "NVIDIA_TESLA_T4": "nvidia-tesla-t4",
    "NVIDIA_TESLA_A100": "nvidia-tesla-a100",
    "NVIDIA_A100_80GB": "nvidia-a100-80gb",
    "NVIDIA_L4": "nvidia-l4",
    "NVIDIA_H100_80GB": "nvidia-h100-80gb",
    "NVIDIA_H100_MEGA_80GB": "nvidia-h100-mega-80gb",
    "NVIDIA_H200_141GB": "nvidia-h200-141gb",
    "NVIDIA_B200": "nvidia-b200",
}
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
# The taint GPU node pools carry (GKE, most operators): GPU pods tolerate it.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def gke_accelerator(accelerator_type: str) -> str:
    """GKE's node label value for a Vertex-style accelerator name (``NVIDIA_TESLA_T4``)."""
    return GKE_ACCELERATORS.get(accelerator_type, accelerator_type.lower().replace("_", "-"))


def gpu_node_selector(accelerator_type: str) -> dict[str, str]:
    """The node selector that puts a pod with this accelerator on its node pool."""
    return {GKE_ACCELERATOR_LABEL: gke_accelerator(accelerator_type)}
