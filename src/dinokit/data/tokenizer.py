"""Text in: CLIP's byte-level BPE tokenizer (the vocabulary `bpe_simple_vocab_16e6.txt.gz`), as dino.txt uses
it, on Hugging Face `tokenizers`. The text is cleaned as CLIP cleans it (ftfy, HTML entities unescaped
twice, whitespace collapsed, lower case), then split by CLIP's pattern and merged by the BPE model with
`</w>` ending each word; the ids are framed by <|startoftext|> … <|endoftext|>, zero-padded to the
context length and truncated with the end token kept (tested id for id against CLIP's own tokenizer).
"""
from __future__ import annotations

import gzip
import html
import os
from functools import lru_cache

CONTEXT_LENGTH = 77
START, END = "<|startoftext|>", "<|endoftext|>"
_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_MERGES = 49152 - 256 - 2  # the vocabulary's first line is a header; CLIP uses this many merges


def _byte_alphabet() -> list[str]:
    """The printable character GPT-2's byte-level BPE gives each byte, in byte order of CLIP's vocabulary
    (printable bytes keep their character, the others map to 256 + n)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in kept]
    return [chr(b) for b in kept] + [chr(256 + n) for n in range(len(others))]


def clean(text: str) -> str:
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


class ClipTokenizer:
    """`tokenize(texts)` → LongTensor [N, 77], as dino.txt's official `Tokenizer.tokenize`."""

    def __init__(self, vocab_path: str | os.PathLike):
        self.vocab_path = str(vocab_path)
        self._tokenizer = _build(self.vocab_path)
        self.start_id = self._tokenizer.token_to_id(START)
        self.end_id = self._tokenizer.token_to_id(END)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The BPE ids of one text, without the start and end tokens."""
        return self._tokenizer.encode(clean(text), add_special_tokens=False).ids

    def tokenize(self, texts: str | list[str], context_length: int = CONTEXT_LENGTH):
        import torch

        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, encoding in enumerate(self._tokenizer.encode_batch([clean(t) for t in texts], add_special_tokens=False)):
            ids = [self.start_id, *encoding.ids, self.end_id][:context_length]
            ids[-1] = self.end_id  # a truncated text still ends with the end token (the pooling reads it)
            out[i, :len(ids)] = torch.tensor(ids)
        return out

    __call__ = tokenize


@lru_cache(maxsize=4)
def _build(vocab_path: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1:_MERGES + 1]]
    alphabet = _byte_alphabet()
    vocab = [*alphabet, *(c + "</w>" for c in alphabet), *("".join(m) for m in merges), START, END]
    bpe = models.BPE(vocab={token: i for i, token in enumerate(vocab)}, merges=merges, end_of_word_suffix="</w>",
                     fuse_unk=False)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PATTERN), behavior="removed", invert=True),  # keep the matches, drop the rest
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    tokenizer.add_special_tokens([START, END])
    return tokenizer
