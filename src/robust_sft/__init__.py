"""robust-sft: fine-tune causal LLMs without breaking what they already know.

Implements token-perplexity analysis, Selective Token Masking (STM), and low-perplexity
training data (Self-Output, Rephrase), after arXiv 2501.14315.
"""

__version__ = "0.1.0"
