"""Foundation: datasets and their files, errors, the result store, tokenised batches, model loading,
the chat LM wrapper, training settings and context, losses and adapters. Imports nothing of ours above it."""
