"""Compression stage: pruning, distillation, low-rank factorization, QAT and TFLite conversion."""
