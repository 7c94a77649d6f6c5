/* mtft tokenizer: GPT-2 style byte-level BPE.
 *
 * Loads OpenAI's encoder.json + vocab.bpe, Hugging Face's vocab.json +
 * merges.txt, or a BPE tokenizer.json; trains new merges on raw text; saves
 * vocab.json + merges.txt. Text is split with GPT-2's pre-tokenisation regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (implemented by hand; \p{L}, \p{N} from Unicode tables, \s = White_Space).
 * A byte that is not part of a valid UTF-8 sequence counts as one symbol that
 * is neither a letter, a number nor a space. Every byte string round-trips:
 * decode(encode(x)) == x for any x, including invalid UTF-8 and NUL bytes.
 *
 * Tokens have two forms: the *display* form used in the vocabulary files
 * (bytes mapped through GPT-2's byte-to-unicode table, e.g. "\xc4\xa0the" for
 * " the"), which token_to_id / id_to_token use, and the raw bytes the token
 * stands for (mtft_tokenizer_token_bytes, decode).
 *
 * Special (added) tokens such as "<|endoftext|>" are matched verbatim in the
 * text only when special parsing is on (mtft_tokenizer_set_parse_special);
 * otherwise they are encoded as ordinary text.
 *
 * Handles are thread-compatible: one thread at a time per handle (encode
 * updates a word cache). See docs/tokenizer.md. */
#ifndef MTFT_TOKENIZER_H
#define MTFT_TOKENIZER_H

#include "mtft/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mtft_tokenizer mtft_tokenizer;

/* OpenAI GPT-2 files: encoder.json (token -> id) and vocab.bpe (merges, one
 * "a b" per line after an optional "#version" line). Vocabulary entries of
 * the form "<|...|>" become special tokens. */
MTFT_API int mtft_tokenizer_load_gpt2(mtft_tokenizer **out, const char *encoder_json_path,
                                      const char *vocab_bpe_path);
/* Hugging Face files: vocab.json + merges.txt (same formats as above). */
MTFT_API int mtft_tokenizer_load_hf(mtft_tokenizer **out, const char *vocab_json_path,
                                    const char *merges_txt_path);
/* A Hugging Face tokenizer.json whose model.type is "BPE" (byte-level):
 * model.vocab, model.merges ("a b" strings or ["a", "b"] pairs) and
 * added_tokens (all become special tokens with their given ids). Other model
 * types fail with MTFT_EUNSUPPORTED. */
MTFT_API int mtft_tokenizer_load_json(mtft_tokenizer **out, const char *tokenizer_json_path);
MTFT_API void mtft_tokenizer_free(mtft_tokenizer *tok);

/* Number of ids (0 .. size-1), special tokens included. */
MTFT_API int32_t mtft_tokenizer_vocab_size(const mtft_tokenizer *tok);
/* Number of merges. */
MTFT_API int32_t mtft_tokenizer_n_merges(const mtft_tokenizer *tok);
/* Id of a token given in display form (special tokens: their text), or -1. */
MTFT_API int32_t mtft_tokenizer_token_to_id(const mtft_tokenizer *tok, const char *token);
/* Display form of an id (NUL-terminated, owned by tok), or NULL when the id
 * is out of range. */
MTFT_API const char *mtft_tokenizer_id_to_token(const mtft_tokenizer *tok, int32_t id);
/* Raw bytes of an id and their count, or NULL when the id is out of range. */
MTFT_API const char *mtft_tokenizer_token_bytes(const mtft_tokenizer *tok, int32_t id, size_t *len);
MTFT_API int mtft_tokenizer_is_special(const mtft_tokenizer *tok, int32_t id);

/* Register a special token (non-empty text, at most 256 bytes). An existing
 * special token, or a vocabulary token with that display form, keeps its id;
 * otherwise it gets the next new id (vocab_size before the call). *id may be
 * NULL. */
MTFT_API int mtft_tokenizer_add_special(mtft_tokenizer *tok, const char *text, int32_t *id);
/* on != 0: special tokens in the text are recognised (longest match first).
 * Default 0: the text is encoded as ordinary bytes. */
MTFT_API void mtft_tokenizer_set_parse_special(mtft_tokenizer *tok, int on);
/* 1 when special parsing is on (encodings depend on it; e.g. for cache keys). */
MTFT_API int mtft_tokenizer_parse_special(const mtft_tokenizer *tok);

/* Encode len bytes of text (any bytes). Writes up to cap ids (ids may be NULL
 * when cap is 0) and sets *n_out to the number of ids the whole text needs.
 * Returns MTFT_OK, or MTFT_ERANGE when cap < *n_out (the first cap ids are
 * written). */
MTFT_API int mtft_tokenizer_encode(mtft_tokenizer *tok, const char *text, size_t len, int32_t *ids,
                                   size_t cap, size_t *n_out);
/* Decode n ids to bytes. Writes up to cap bytes and sets *len_out to the
 * number of bytes the whole result needs; a NUL follows the bytes when
 * cap > *len_out. Returns MTFT_OK, MTFT_ERANGE when cap < *len_out (the
 * first cap bytes are written), or MTFT_EINVAL (the message names the id and
 * its position) for an id that is out of range. */
MTFT_API int mtft_tokenizer_decode(const mtft_tokenizer *tok, const int32_t *ids, size_t n, char *buf,
                                   size_t cap, size_t *len_out);

/* BPE training on raw text. */
typedef struct mtft_bpe_train_options {
    int version;
    int32_t vocab_size;                  /* target size: 256 bytes + merges + specials */
    int64_t min_frequency;               /* a pair must occur at least this often to merge */
    const char *const *special_tokens;   /* added after the merges, in order; may be NULL */
    int n_special_tokens;
} mtft_bpe_train_options;
#define MTFT_BPE_TRAIN_OPTIONS_VERSION 1
#define MTFT_BPE_TRAIN_OPTIONS_INIT {MTFT_BPE_TRAIN_OPTIONS_VERSION, 4096, 2, NULL, 0}

/* Learn byte-level BPE merges from text (GPT-2 pre-tokenisation; occurrences
 * of the special tokens are cut out before counting). Ids 0..255 are the
 * bytes in GPT-2's order, then one id per merge, then the special tokens.
 * The most frequent pair merges first; ties go to the pair whose left id,
 * then right id, is smallest. Deterministic. Stops early when no pair occurs
 * min_frequency times. o may be NULL (defaults). */
MTFT_API int mtft_tokenizer_train(mtft_tokenizer **out, const char *text, size_t len,
                                  const mtft_bpe_train_options *o);
/* Write vocab.json (display form -> id, specials included) and merges.txt
 * ("#version: 0.2" then "a b" per merge), loadable by mtft_tokenizer_load_hf
 * and by Hugging Face's GPT2Tokenizer. */
MTFT_API int mtft_tokenizer_save_hf(const mtft_tokenizer *tok, const char *vocab_json_path,
                                    const char *merges_txt_path);

#ifdef __cplusplus
}
#endif
#endif
