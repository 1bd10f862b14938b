"""Publishing releases to the Hugging Face Hub as immutable versions, and pulling them back."""
