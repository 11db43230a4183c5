/* A small JSON reader for the conformance harness: enough for the JSON-lines protocol (CONF-4).
 *
 * Values live in an arena freed after every message (arena_reset). Integers keep their exact
 * magnitude (up to 2**64 - 1; larger ones set int_overflow) so that seeds need no binary64 rounding.
 */
#ifndef LITE_JSON_H
#define LITE_JSON_H

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: every allocation of one message, freed at once ---------------------------------- */
static void **arena_ptrs;
static size_t arena_n, arena_cap;

static void *arena_alloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(3); }
    if (arena_n == arena_cap) {
        arena_cap = arena_cap ? 2 * arena_cap : 256;
        arena_ptrs = realloc(arena_ptrs, arena_cap * sizeof *arena_ptrs);
        if (!arena_ptrs) { fprintf(stderr, "out of memory\n"); exit(3); }
    }
    arena_ptrs[arena_n++] = p;
    return p;
}

static void arena_reset(void) {
    for (size_t i = 0; i < arena_n; i++) free(arena_ptrs[i]);
    arena_n = 0;
}

/* ---- values ----------------------------------------------------------------------------------- */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
    jtype t;
    int b;                  /* J_BOOL */
    double num;             /* J_NUM: the value as binary64 */
    int is_int;             /* J_NUM: written without fraction or exponent */
    int neg;                /* J_NUM integer: sign */
    uint64_t mag;           /* J_NUM integer: magnitude, exact when !int_overflow */
    int int_overflow;       /* J_NUM integer: magnitude >= 2**64 */
    char *s;                /* J_STR */
    struct jval **items;    /* J_ARR and J_OBJ values */
    char **keys;            /* J_OBJ keys */
    size_t n;
} jval;

typedef struct { const char *p; const char *err; } jparser;

static void jskip(jparser *ps) { while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++; }

static jval *jparse_value(jparser *ps);

static char *jparse_string(jparser *ps) {
    /* ps->p at the opening quote */
    size_t cap = 16, n = 0;
    char *out = malloc(cap);
    ps->p++;
    for (;;) {
        unsigned char c = (unsigned char)*ps->p++;
        if (c == 0) { ps->err = "unterminated string"; free(out); return NULL; }
        if (c == '"') break;
        if (n + 5 >= cap) { cap *= 2; out = realloc(out, cap); }
        if (c != '\\') { out[n++] = (char)c; continue; }
        c = (unsigned char)*ps->p++;
        switch (c) {
        case '"': case '\\': case '/': out[n++] = (char)c; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                char h = *ps->p++;
                cp <<= 4;
                if (h >= '0' && h <= '9') cp |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f') cp |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F') cp |= (unsigned)(h - 'A' + 10);
                else { ps->err = "bad \\u escape"; free(out); return NULL; }
            }
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) { out[n++] = (char)(0xC0 | (cp >> 6)); out[n++] = (char)(0x80 | (cp & 63)); }
            else { out[n++] = (char)(0xE0 | (cp >> 12)); out[n++] = (char)(0x80 | ((cp >> 6) & 63)); out[n++] = (char)(0x80 | (cp & 63)); }
            break;
        }
        default: ps->err = "bad escape"; free(out); return NULL;
        }
    }
    out[n] = 0;
    char *s = arena_alloc(n + 1);
    memcpy(s, out, n + 1);
    free(out);
    return s;
}

static jval *jparse_number(jparser *ps) {
    jval *v = arena_alloc(sizeof *v);
    const char *start = ps->p;
    v->t = J_NUM;
    v->is_int = 1;
    if (*ps->p == '-') { v->neg = 1; ps->p++; }
    if (!isdigit((unsigned char)*ps->p)) { ps->err = "bad number"; return NULL; }
    while (isdigit((unsigned char)*ps->p)) {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v->mag > (UINT64_MAX - d) / 10) v->int_overflow = 1;
        else v->mag = v->mag * 10 + d;
        ps->p++;
    }
    if (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E') {
        v->is_int = 0;
        if (*ps->p == '.') { ps->p++; while (isdigit((unsigned char)*ps->p)) ps->p++; }
        if (*ps->p == 'e' || *ps->p == 'E') {
            ps->p++;
            if (*ps->p == '+' || *ps->p == '-') ps->p++;
            while (isdigit((unsigned char)*ps->p)) ps->p++;
        }
    }
    v->num = strtod(start, NULL);
    return v;
}

static jval *jparse_value(jparser *ps) {
    jskip(ps);
    char c = *ps->p;
    if (c == '{' || c == '[') {
        int obj = c == '{';
        jval *v = arena_alloc(sizeof *v);
        size_t cap = 8;
        v->t = obj ? J_OBJ : J_ARR;
        v->items = malloc(cap * sizeof *v->items);
        char **keys = obj ? malloc(cap * sizeof *keys) : NULL;
        ps->p++;
        jskip(ps);
        if (*ps->p == (obj ? '}' : ']')) ps->p++;
        else for (;;) {
            jskip(ps);
            if (v->n == cap) {
                cap *= 2;
                v->items = realloc(v->items, cap * sizeof *v->items);
                if (obj) keys = realloc(keys, cap * sizeof *keys);
            }
            if (obj) {
                if (*ps->p != '"') { ps->err = "expected a key"; return NULL; }
                keys[v->n] = jparse_string(ps);
                if (!keys[v->n]) return NULL;
                jskip(ps);
                if (*ps->p++ != ':') { ps->err = "expected ':'"; return NULL; }
            }
            jval *item = jparse_value(ps);
            if (!item) return NULL;
            v->items[v->n++] = item;
            jskip(ps);
            if (*ps->p == ',') { ps->p++; continue; }
            if (*ps->p == (obj ? '}' : ']')) { ps->p++; break; }
            ps->err = "expected ',' or a closing bracket";
            return NULL;
        }
        /* move the item arrays into the arena */
        jval **items = arena_alloc((v->n ? v->n : 1) * sizeof *items);
        memcpy(items, v->items, v->n * sizeof *items);
        free(v->items);
        v->items = items;
        if (obj) {
            v->keys = arena_alloc((v->n ? v->n : 1) * sizeof *v->keys);
            memcpy(v->keys, keys, v->n * sizeof *keys);
            free(keys);
        }
        return v;
    }
    if (c == '"') {
        jval *v = arena_alloc(sizeof *v);
        v->t = J_STR;
        v->s = jparse_string(ps);
        return v->s ? v : NULL;
    }
    if (c == '-' || isdigit((unsigned char)c)) return jparse_number(ps);
    jval *v = arena_alloc(sizeof *v);
    if (!strncmp(ps->p, "true", 4)) { v->t = J_BOOL; v->b = 1; ps->p += 4; return v; }
    if (!strncmp(ps->p, "false", 5)) { v->t = J_BOOL; ps->p += 5; return v; }
    if (!strncmp(ps->p, "null", 4)) { v->t = J_NULL; ps->p += 4; return v; }
    ps->err = "unexpected character";
    return NULL;
}

static jval *jparse(const char *text, const char **err) {
    jparser ps = {text, NULL};
    jval *v = jparse_value(&ps);
    *err = ps.err;
    return v;
}

/* ---- access ----------------------------------------------------------------------------------- */
static jval *jget(const jval *obj, const char *key) {
    if (!obj || obj->t != J_OBJ) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return obj->items[i];
    return NULL;
}

/* An integer field in [lo, hi]; returns 0 and sets *ok = 0 when absent (use dflt) or invalid. */
static int jint_field(const jval *obj, const char *key, long long dflt, long long lo, long long hi, long long *out) {
    jval *v = jget(obj, key);
    if (!v) { *out = dflt; return 1; }
    if (v->t != J_NUM || !v->is_int || v->int_overflow || v->mag > (uint64_t)INT64_MAX) return 0;
    long long x = v->neg ? -(long long)v->mag : (long long)v->mag;
    if (x < lo || x > hi) return 0;
    *out = x;
    return 1;
}

/* ---- writing JSON strings --------------------------------------------------------------------- */
static void jwrite_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

#endif
