"""The GPT: config, blocks, KV cache, sampling. Imports torch only and knows nothing of data."""

from model.config import GPTConfig
from model.gpt import GPT, KVCache
from model.sampling import generate, sample_next

__all__ = ["GPT", "GPTConfig", "KVCache", "generate", "sample_next"]
