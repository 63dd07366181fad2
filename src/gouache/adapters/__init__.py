"""Adapters users bring: textual-inversion embeddings and LoRA, in the formats the community uses."""
