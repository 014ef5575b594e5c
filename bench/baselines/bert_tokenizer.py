#!/usr/bin/env python3
"""Baseline for bench/tokenize.ts: the released Chinese-CLIP / ViLReF tokenizer in pure Python.

Neither `transformers` nor `tokenizers` is installed for Debian's python3 here, so this file is a
faithful port of the released `cn_clip/clip/bert_tokenizer.py` (Google BERT's tokenization.py:
BasicTokenizer with do_lower_case=True + WordpieceTokenizer, max 200 chars a word), the released
`tokenize(texts, context_length)` ([CLS] ids[:L-2] [SEP], right-padded with 0) and the training
dataset's text preprocessing (lowercase, curly double quotes -> '"'), which `tokenize` itself does
not apply (the fixture shows it: a curly quote becomes [UNK]); --preprocess applies it in --bench.

Usage:
  bert_tokenizer.py --vocab V --check FIXTURE.jsonl          parity with a fixture (ids52, ids100)
  bert_tokenizer.py --vocab V --bench TEXTS.jsonl -L 52      tokens/s over a text file
"""
import argparse
import collections
import hashlib
import json
import sys
import time
import unicodedata


def load_vocab(vocab_file):
    vocab = collections.OrderedDict()
    index = 0
    with open(vocab_file, "r", encoding="utf-8") as reader:
        while True:
            token = reader.readline()
            if not token:
                break
            token = token.strip()
            vocab[token] = index
            index += 1
    return vocab


def whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    return text.split()


def _is_whitespace(char):
    if char == " " or char == "\t" or char == "\n" or char == "\r":
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    if char == "\t" or char == "\n" or char == "\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF)
            or (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F)
            or (0x2B820 <= cp <= 0x2CEAF) or (0xF900 <= cp <= 0xFAFF)
            or (0x2F800 <= cp <= 0x2FA1F))


class BasicTokenizer:
    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        orig_tokens = whitespace_tokenize(text)
        split_tokens = []
        for token in orig_tokens:
            if self.do_lower_case:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text):
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    def _run_split_on_punc(self, text):
        chars = list(text)
        i = 0
        start_new_word = True
        output = []
        while i < len(chars):
            char = chars[i]
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
            i += 1
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text):
        output = []
        for char in text:
            if _is_chinese_char(ord(char)):
                output.append(" ")
                output.append(char)
                output.append(" ")
            else:
                output.append(char)
        return "".join(output)

    def _clean_text(self, text):
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=200):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        output_tokens = []
        for token in whitespace_tokenize(text):
            chars = list(token)
            if len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class FullTokenizer:
    def __init__(self, vocab_file):
        self.vocab = load_vocab(vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=True)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text):
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            for sub_token in self.wordpiece_tokenizer.tokenize(token):
                split_tokens.append(sub_token)
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


def preprocess_text(text):
    return text.lower().replace("\u201c", "\"").replace("\u201d", "\"")


def tokenize(tok, text, context_length):
    """cn_clip.clip.tokenize for one text (the training dataset calls preprocess_text first)."""
    ids = ([tok.vocab["[CLS]"]] + tok.convert_tokens_to_ids(tok.tokenize(text))[:context_length - 2]
           + [tok.vocab["[SEP]"]])
    return ids + [0] * (context_length - len(ids))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--check")
    ap.add_argument("--bench")
    ap.add_argument("-L", type=int, default=52)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--preprocess", action="store_true")
    a = ap.parse_args()
    tok = FullTokenizer(a.vocab)
    if a.check:
        bad = 0
        n = 0
        for line in open(a.check, encoding="utf-8"):
            case = json.loads(line)
            n += 1
            for L, key in ((52, "ids52"), (100, "ids100")):
                got = tokenize(tok, case["text"], L)
                if got != case[key]:
                    bad += 1
                    print("MISMATCH", L, repr(case["text"][:60]), got, case[key], file=sys.stderr)
        print(json.dumps({"cases": n, "mismatches": bad}))
        sys.exit(1 if bad else 0)
    if a.bench:
        texts = []
        for line in open(a.bench, encoding="utf-8"):
            o = json.loads(line)
            texts.append(o["text"] if isinstance(o, dict) else o)
            if a.limit and len(texts) >= a.limit:
                break
        t0 = time.perf_counter()
        rows = []
        for t in texts:
            rows.append(tokenize(tok, preprocess_text(t) if a.preprocess else t, a.L))
        dt = time.perf_counter() - t0
        # Digest of every id row, to check the TypeScript tokenizer gave the same ids.
        h = hashlib.sha256()
        ntok = 0
        for ids in rows:
            h.update((",".join(map(str, ids)) + "\n").encode())
            ntok += sum(1 for x in ids if x != 0)
        print(json.dumps({"texts": len(texts), "seconds": dt, "texts_per_s": len(texts) / dt, "tokens": ntok,
                          "sha256": h.hexdigest()}))


if __name__ == "__main__":
    main()
