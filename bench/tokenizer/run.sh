#!/bin/sh
# Tokenizer benchmark: cotune vs HF tokenizers on ~50 MB of diverse text (see run.py for the options).
exec python3 "$(dirname "$0")/run.py" "$@"
