"""The tiny models' tokenizers, made offline (no hub): byte-level BPE or word-level models trained with `tokenizers` on
the words the scenes and templates use and on the prompt files, wrapped in the transformers classes the real models
ship, with the chat templates the real ones carry.

The two BPE tokenizers (the LLM's and the VLM's) are frozen: trained once and committed under `tiny_tokenizers/`, so
that editing a prompt file changes neither the tiny models' token ids nor, through them, the golden bytes.
`python -m datagen.models.tokenizers` retrains them from the prompt files as they are now (then re-record the tiny
golden hashes, saying why, in the same commit).
"""

from __future__ import annotations

from pathlib import Path

from datagen import scenes

FROZEN = Path(__file__).with_name("tiny_tokenizers")
"""Where the frozen BPE tokenizers live, one `tokenizer.json` (the `tokenizers` library's format) per model."""

WORDS = sorted(
    {
        *scenes.COLORS,
        *scenes.PATTERNS,
        *scenes.SHAPES,
        *(word for name in scenes.BACKGROUNDS for word in name.split()),
        *"a an the and on in of with against remove add put delete erase take away get rid from image picture".split(),
        *"please can you make it gone disappear without leave everything else as is into there place".split(),
    }
)
"""Vocabulary of the tiny tokenizers: every word the scenes and templates use, so tokens are not all unknown."""


def clip_tokenizer():
    """CLIP BPE tokenizer over single characters (no merges): every text tokenises, deterministically.

    Every printable ASCII character has a token and unknown ones get their own: CLIP pools the text at the first
    end-of-text token, so an unknown character mapped to it would cut the text short there.
    """
    import string

    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<|unk|>": 2}
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, unk_token="<|unk|>")


def bert_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", ","]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    return BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def t5_tokenizer():
    """T5 unigram tokenizer over single characters (letters of both cases, digits, punctuation, word starts): every
    text tokenises, deterministically; pad, end and unknown take T5's ids 0, 1 and 2."""
    import string

    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(char, -3.0) for char in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("\u2581" + char, -3.5) for char in string.ascii_letters]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token }}[INST] {% if loop.first and system %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}"
    "{{ message['content'] }} [/INST]{% else %} {{ message['content'] }} {{ eos_token }}{% endif %}{% endfor %}"
)
"""Llama 2 chat format ([INST] and <<SYS>>), as the real Llama-2-chat tokenizers carry it."""


def llama_tokenizer():
    """Byte-level BPE over printable ASCII, trained on the prompt files and scene words; other bytes are <unk>.

    Every token is whole ASCII characters, so whatever a random model samples decodes to valid text (with all 256
    bytes in the vocabulary it samples broken UTF-8 sequences, which the grammar and Python count differently).
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_frozen("llama"),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=LLAMA2_CHAT_TEMPLATE,
        model_max_length=4096,
    )


VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""Idefics3's chat format (`User:<image><image>text<end_of_utterance>`), image parts as `{"type": "image"}`."""


VLM_TOKENS = ["<fake_token_around_image>", "<image>", "<global-img>"]
VLM_TOKENS += [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]
"""The special tokens Idefics3's processor writes around and for each image."""


def vlm_tokenizer():
    """Byte-level BPE over printable ASCII (see llama_tokenizer), trained on the prompt files (the judge's rubrics
    included) and the judge's answer keys, with Idefics3's image tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_frozen("vlm"),
        bos_token="<|begin_of_text|>",
        eos_token="<end_of_utterance>",
        pad_token="<|end_of_text|>",
        unk_token="<unk>",
        additional_special_tokens=VLM_TOKENS,
        chat_template=VLM_CHAT_TEMPLATE,
        model_max_length=4096,
    )


def _ascii_bpe(corpus: list[str], prompts: str, spaces: list[str], vocab_size: int, special: list[str]):
    """A byte-level BPE over printable ASCII (plus the byte symbols `spaces`), trained on `corpus` and the lines of
    the prompt files matching `prompts`; non-ASCII characters are dropped from the training text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from datagen.config import config_root

    corpus = list(corpus)
    for path in sorted((config_root() / "prompts").glob(prompts)):
        corpus.extend(path.read_text(encoding="utf-8").splitlines())
    corpus = [line.encode("ascii", "ignore").decode() for line in corpus]
    alphabet = [chr(b) for b in range(0x21, 0x7F)] + spaces  # byte-level symbols of ASCII; U+0120 is space
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def _llama_bpe():
    corpus = [" ".join(WORDS), '{"instruction": "", "output_caption": "", "objects": []}']
    return _ascii_bpe(corpus, "*.yaml", ["\u0120"], 512, ["<unk>", "<s>", "</s>"])


def _vlm_bpe():
    corpus = [" ".join(WORDS), '{"reasoning": "", "following": 0, "preservation": 0, "quality": 0, "overall": 0}']
    corpus.append('{"instruction_rewritten": "", "instruction": "", "output_caption": "", "objects": []}')
    special = ["<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<end_of_utterance>", *VLM_TOKENS]
    return _ascii_bpe(corpus, "**/*.yaml", ["\u0120", "\u010a"], 768, special)  # space and newline as bytes


TRAINERS = {"llama": _llama_bpe, "vlm": _vlm_bpe}
"""How each frozen tokenizer was trained: the LLM's on the top-level prompt files, the VLM's on all of them (the
judge's rubrics included) and the judge's answer keys."""


def _frozen(name: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(FROZEN / f"{name}.json"))


def freeze() -> list[Path]:
    """Retrain every frozen tokenizer from the prompt files as they are now and write it under FROZEN."""
    FROZEN.mkdir(exist_ok=True)
    written = []
    for name, train in TRAINERS.items():
        path = FROZEN / f"{name}.json"
        path.write_text(train().to_str(pretty=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in freeze():
        print(f"wrote {path}")
