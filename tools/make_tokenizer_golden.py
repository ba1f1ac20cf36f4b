#!/usr/bin/env python3
"""Golden ids for cotune's tokenizer, made with the Hugging Face `tokenizers` package (PyPI).

Loads the real DeepSeek-R1-Distill-Qwen-1.5B tokenizer with `tokenizers.Tokenizer.from_file` (not
transformers.AutoTokenizer, whose 5.x versions mis-handle that folder) and writes, for a corpus assembled
here (fixture dataset records, Chinese, English, code, numbers, emoji / ZWJ sequences, combining marks,
white-space runs, contractions, added tokens inside text, and seeded random strings over a pool of tricky
characters):

  tests/golden/tokenizer/encode.jsonl   {"text", "ids" (add_special_tokens=True), "ids_no_special",
                                         "nfc" (NFC(text); omitted when equal to text), "decoded"
                                         (decode(ids_no_special); omitted when equal to nfc), "decoded_skip"
                                         (decode(ids, skip_special_tokens=True); omitted when equal to decoded)}
  tests/golden/tokenizer/decode.jsonl   {"ids", "text", "text_skip"}: arbitrary id runs, including ones that
                                         cut UTF-8 characters (lossy decoding) and special tokens
  tests/golden/tokenizer/meta.json      versions, tokenizer sha256, special ids

Usage: python3 tools/make_tokenizer_golden.py [--fixtures ../shared/fixtures] [--out tests/golden/tokenizer]
"""
import argparse
import hashlib
import json
import os
import random
import unicodedata

import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

HANDWRITTEN = [
    "",
    " ",
    "  ",
    "\n",
    "a",
    "Hello world",
    "Hello, world! How are you?",
    "你好",
    "你好，世界！今天天气怎么样？",
    "患者男性，45岁，因反复上腹痛3个月入院。既往有高血压病史，规律服药控制良好。",
    "根据患者的症状和体征考虑急性阑尾炎可能性大需要进一步完善血常规腹部超声等检查以明确诊断并及时给予相应治疗",
    "日本語のテキストとカタカナ、ひらがな。한국어 텍스트도 있습니다.",
    "Ελληνικά κείμενα και русский текст, עברית, العربية, हिन्दी नमस्ते, ภาษาไทย",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot\r\n",
    "if __name__ == '__main__':\n    main()\n",
    "x = {'a': [1, 2, 3], \"b\": None}\n",
    "<html><body><div class=\"x\">&nbsp;&amp;</div></body></html>",
    "1234567890 3.14159 -42 1e-10 0x1F 1,000,000 2024-01-01 12:30:45",
    "Numbers: ①②③ ½ ¾ ² ³ Ⅻ ٣٤٥ ۱۲۳ १२३ ๑๒๓ 〇一二三",
    "Emoji 😀😃😄 👍🏽 ❤️ 🇨🇳🇺🇸 👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍💻 ✊🏾",
    "ZWJ👩‍❤️‍💋‍👨 and keycap 1️⃣ #️⃣ and VS16 ☺️",
    "Cafe\u0301 na\u0308ive re\u0301sume\u0301 A\u030a \u1e9b\u0323 \u0071\u0307\u0323",
    "Hangul jamo \u1100\u1161\u11a8 and \u1112\u1161\u11ab",
    "Compatibility: \ufb01 \u2126 \u212b \uff21\uff22 \u00bd \u2460 \u3300",
    "tabs\tand\t\ttabs \t \t",
    "windows\r\nline\r\n\r\nendings\r\n",
    "trailing spaces   ",
    "   leading spaces",
    "many     spaces    between   words",
    "mixed \n \n\n   \t\n  newlines  \n",
    "\r\r\n\n\r",
    "\u3000全角空格\u3000\u3000和\u00a0不换行空格\u2003em space\u2028line sep\u2029para\u0085nel",
    "it's don't I'm we're they've I'll she'd",
    "IT'S DON'T I'M WE'RE THEY'VE I'LL SHE'D",
    "It'S dOn'T 'll 've 're 'd 'm 's 't",
    "'s'S'ſ'k 'K''''",
    "rock 'n' roll, 'quoted', \"double\", ‘curly’ “quotes”",
    "<think>\n好的，我来分析一下这个问题。\n</think>\n\n答案是A。<｜end▁of▁sentence｜>",
    "<think>reasoning</think>answer<｜end▁of▁sentence｜>",
    "text <think> spaced </think> end <｜end▁of▁sentence｜>",
    " <think>",
    "x  <think>  y",
    "<｜begin▁of▁sentence｜><｜User｜>你好<｜Assistant｜><think>\n",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "<<think>> <think<think> </think</think>> <｜end▁of▁sentence",
    "<|EOT|><|quad_start|><|vision_pad|><|fim_prefix|><tool_call></tool_call>",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＳＣＩＩ，ｐｕｎｃｔｕａｔｉｏｎ！",
    "URL https://example.com/path?q=1&b=2#frag and email a.b@c.org",
    "-----===+++***...,,,;;;:::!!!???",
    "a" * 300,
    "ab" * 200,
    " " * 50 + "x",
    "\n" * 20,
    "哈" * 120,
    "1" * 64,
    "🙂" * 40,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "Ǆǅǆ ǈ ß ẞ ﬀ İstanbul ıi",
    "\x00\x01\x1f\x7f control \x0b\x0c chars",
    "\u200b\u200c\u200d\u2060\ufeff zero width",
    "\u180e mongolian vowel separator \u180e",
    "Surrogate-range neighbours \ud7ff \ue000 \uffff \U0001F600 \U0010FFFD",
    "Math 𝔸𝕓𝒸 ∑∫∂ √2 ≈ 1.414 ≤ ≥ ≠",
    "Ǎ the end.",
]


def load_records(fixtures):
    texts = []
    base = os.path.join(fixtures, "medical-o1")
    for name in ("medical_o1_sft_en_first10.json", "medical_o1_sft_Chinese_first1.json"):
        with open(os.path.join(base, name), encoding="utf-8") as f:
            records = json.load(f)
        for r in records:
            for key in ("Question", "Complex_CoT", "Response"):
                texts.append(r[key])
            # As the data pipeline formats it: prompt + <think> CoT </think> answer + EOS.
            texts.append("### Question:\n{}\n\n### Response:\n<think>\n{}\n</think>\n{}<｜end▁of▁sentence｜>".format(
                r["Question"], r["Complex_CoT"], r["Response"]))
    with open(os.path.join(base, "seed_prompt_templates.json"), encoding="utf-8") as f:
        templates = json.load(f)

    def walk(v):
        if isinstance(v, str):
            texts.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(templates)
    return texts


def random_strings(n, seed):
    """Seeded random strings over a pool of characters chosen to stress the pre-tokenizer regex."""
    pool = (list("aAzZéÉßſ") + list("你好世界的一是") + list("ひカ한") + list("0189") +
            ["²", "½", "Ⅻ", "٣", "१"] + list(" \t\n\r") +
            ["\u00a0", "\u3000", "\u2028", "\u0085", "\u180e", "\u200b", "\u2003", "\x0b", "\x0c", "\x1c"] +
            list("'\"!?.,;:-_()[]{}<>/\\|@#$%^&*+=~`") + ["’", "，", "。", "！", "—"] +
            ["\u0301", "\u0308", "\u093f", "\u0323", "\u302a"] + ["😀", "👍", "🏽", "\u200d", "\ufe0f", "🇨"] +
            ["<think>", "</think>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<|EOT|>", "'s", "'LL", "'Re"])
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(pool) for _ in range(k)))
    return out


def code_samples():
    """A few real source files of the Python standard library (code, comments, docstrings)."""
    import inspect
    import textwrap
    import json as json_mod
    import random as random_mod
    out = []
    for mod in (textwrap, json_mod.decoder, random_mod):
        src = inspect.getsource(mod)
        out.append(src[:4000])
    return out


def decode_cases(tok, rng, encoded):
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    cases = []
    # Windows of real encodings that cut multi-byte characters at the edges.
    for ids in encoded:
        if len(ids) < 4:
            continue
        for _ in range(2):
            a = rng.randrange(0, len(ids) - 1)
            b = min(len(ids), a + rng.randint(1, 12))
            cases.append(ids[a:b])
    # Random ids from the whole vocabulary, special tokens included.
    for _ in range(150):
        cases.append([rng.randrange(0, vocab_size) for _ in range(rng.randint(1, 8))])
    # Single bytes that are invalid on their own, and truncated sequences.
    byte_ids = [tok.token_to_id(c) for c in ["\u00c3", "\u00a4", "\u00e6", "\u00bd", "\u0142", "\u0124"]]
    cases.append([b for b in byte_ids if b is not None])
    cases.append([151643, 151646, 151648, 151649, 151644, 151645, 151650, 151664])
    return cases


SYNTH_EXTRA = [
    "[L]", " [L]", "x   [L]y", "[R]", "[R]   y", "x[R] \n y", "[LR]", "  [LR]  ", "a [LR] b",
    "<w>", "a<w>b", "a <w> b", " <w>", "<w>x", "1<w>", "é<w>", "<w>.",
    "Nrm", "Ｎrm", "xＮrmy", "<s>x</s>", "hello world", "  two  spaces", "a" * 100,
    "中文句子没有标点会变成一个很长的预分词单元" * 3,
]


def synthetic_tokenizers(corpus):
    """Two small tokenizers trained here, covering what the DeepSeek file does not: added-token flags
    (lstrip / rstrip / single_word / normalized), a Sequence normalizer (NFKC), plain ByteLevel with
    add_prefix_space / use_regex, merges as [a, b] pairs (A) and as "a b" strings (B), ignore_merges (B),
    and a TemplateProcessing with a suffix (A)."""
    from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.Sequence([normalizers.NFKC()])
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<s>", "</s>"], show_progress=False)
    t.train_from_iterator(corpus, trainer)
    t.add_tokens([AddedToken("[L]", lstrip=True), AddedToken("[R]", rstrip=True),
                  AddedToken("[LR]", lstrip=True, rstrip=True), AddedToken("<w>", single_word=True),
                  AddedToken("Ｎrm", normalized=True)])
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", t.token_to_id("<s>")), ("</s>", t.token_to_id("</s>"))])
    a = json.loads(t.to_str())
    b = json.loads(t.to_str())
    b["model"]["ignore_merges"] = True
    b["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in b["model"]["merges"]]
    b["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    b["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    b["normalizer"] = {"type": "NFC"}
    return {"synth_a": a, "synth_b": b}


# Every code point is put in this context (at each '#') and pre-tokenized; the piece lengths in code points
# are its signature. Consecutive code points with one signature form a range.
PRETOK_CONTEXT = "a#b #1'#x ##\n# \t#.\n'#  #\r\n#!#\u3000#\u0301 #"


def pretokenizer_signatures(tok):
    """Run-length ranges "first last signature" of HF's Qwen2 pre-tokenizer over all code points."""
    ranges = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        text = PRETOK_CONTEXT.replace("#", chr(c))
        sig = ",".join(str(e - b) for _, (b, e) in tok.pre_tokenizer.pre_tokenize_str(text))
        if ranges and ranges[-1][2] == sig and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c, sig])
    return ranges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.environ.get("COTUNE_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures")))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "tokenizer"))
    args = ap.parse_args()
    tok_path = os.path.join(args.fixtures, "deepseek-r1-distill-qwen-1.5b", "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)

    texts = HANDWRITTEN + load_records(args.fixtures) + code_samples() + random_strings(400, 20260301)
    os.makedirs(args.out, exist_ok=True)
    encoded = []
    with open(os.path.join(args.out, "encode.jsonl"), "w", encoding="utf-8") as f:
        for text in texts:
            ids = tok.encode(text).ids
            ids_ns = tok.encode(text, add_special_tokens=False).ids
            encoded.append(ids_ns)
            row = {"text": text, "ids": ids, "ids_no_special": ids_ns,
                   "decoded": tok.decode(ids_ns, skip_special_tokens=False),
                   "decoded_skip": tok.decode(ids, skip_special_tokens=True),
                   "nfc": unicodedata.normalize("NFC", text)}
            # Keep the file small: fields equal to an earlier one are left out ("nfc" defaults to "text",
            # "decoded" to "nfc", "decoded_skip" to "decoded").
            if row["nfc"] == text:
                del row["nfc"]
            if row["decoded"] == row.get("nfc", text):
                del row["decoded"]
            if row["decoded_skip"] == row.get("decoded", row.get("nfc", text)):
                del row["decoded_skip"]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    rng = random.Random(7)
    with open(os.path.join(args.out, "decode.jsonl"), "w", encoding="utf-8") as f:
        for ids in decode_cases(tok, rng, encoded):
            f.write(json.dumps({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                                "text_skip": tok.decode(ids, skip_special_tokens=True)}, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "pretok_signatures.txt"), "w", encoding="utf-8") as f:
        f.write("# context {}\n".format(json.dumps(PRETOK_CONTEXT)))
        for first, last, sig in pretokenizer_signatures(tok):
            f.write("{:x} {:x} {}\n".format(first, last, sig))
    # Small synthetic tokenizers (their JSON is written too, so the C++ test loads exactly these).
    synth_texts = HANDWRITTEN[:60] + SYNTH_EXTRA + random_strings(60, 99)
    for name, spec in synthetic_tokenizers(load_records(args.fixtures) + HANDWRITTEN).items():
        path = os.path.join(args.out, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, ensure_ascii=False)
        st = Tokenizer.from_file(path)
        with open(os.path.join(args.out, name + ".encode.jsonl"), "w", encoding="utf-8") as f:
            for text in synth_texts + ["[L] [R] [LR] <w> Ｎrm " + x for x in SYNTH_EXTRA]:
                ids = st.encode(text).ids
                ids_ns = st.encode(text, add_special_tokens=False).ids
                f.write(json.dumps({"text": text, "ids": ids, "ids_no_special": ids_ns,
                                    "decoded": st.decode(ids_ns, skip_special_tokens=False),
                                    "decoded_skip": st.decode(ids, skip_special_tokens=True)},
                                   ensure_ascii=False) + "\n")
    with open(tok_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    meta = {"tokenizers_version": tokenizers.__version__, "tokenizer_sha256": sha,
            "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
            "bos_id": tok.token_to_id("<｜begin▁of▁sentence｜>"), "eos_id": tok.token_to_id("<｜end▁of▁sentence｜>"),
            "encode_cases": len(texts)}
    with open(os.path.join(args.out, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote {} encode cases to {}".format(len(texts), args.out))


if __name__ == "__main__":
    main()
