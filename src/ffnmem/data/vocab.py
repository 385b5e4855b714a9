"""The word-level tokenizer of a synthetic fact corpus (one token per word, so one per value)."""

from __future__ import annotations

from ffnmem.data.synthetic import SPECIALS, FactCorpus


def build_tokenizer(corpus: FactCorpus, *, mask_token: bool = False):
    """A word-level ``PreTrainedTokenizerFast`` over the corpus vocabulary (one token per word).

    Built from a ``tokenizers`` WordLevel model with a whitespace pre-tokenizer, so
    ``save_pretrained`` writes ordinary tokenizer files that :func:`ffnmem.core.models.save_checkpoint`
    stores and ``AutoTokenizer`` reloads offline. ``mask_token`` appends ``<mask>`` (last id) for
    masked-LM objectives; every other id is unchanged.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = list(SPECIALS.values()) + corpus.vocabulary() + (["<mask>"] if mask_token else [])
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk"]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS["bos"], eos_token=SPECIALS["eos"],
                                   pad_token=SPECIALS["pad"], unk_token=SPECIALS["unk"],
                                   **({"mask_token": "<mask>"} if mask_token else {}))
