/* A conformance harness in C for the routing level of Lite LLM (spec chapters 1 and 2).
 *
 * It implements the HSER router and its pieces from the spec text alone (no code shared with the
 * Python reference) and speaks the conformance JSON-lines protocol (spec chapter 11, CONF-4):
 *
 *     lite-llm conform --impl "cmd:conformance/examples/c_router/router" --levels routing
 *
 * Build with build.sh: C11, -O2 -ffp-contract=off (no fused multiply-add, OVW-2.2), no fast-math.
 * Every float operation below is one IEEE-754 binary32 or binary64 operation, round to nearest even.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define MAX_D_MODEL (1 << 17)
#define MAX_TIERS 65536
#define MAX_GROUPS 2147483647LL        /* TIER-1.5: indices are int32 in the routing record */
#define MAX_K 65536                    /* TIER-1.5: at most 2**16 slots per token */

/* ================================================================================================
 * Errors: a rejection carries a code (HSER-10.1) and a message naming the offending value.
 * ============================================================================================== */
static char err_code[64];
static char err_msg[512];

static int reject(const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    snprintf(err_code, sizeof err_code, "%s", code);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* ================================================================================================
 * Tensors: inputs arrive as (path, dtype, shape, offset, nbytes); outputs are raw little-endian bytes.
 * ============================================================================================== */
typedef struct {
    const char *dtype;     /* "float32", "int64", ... */
    int ndim;
    long long shape[8];
    long long n;           /* number of elements */
    void *data;
} tensor;

/* Read input `name` of the run message; returns 0 when absent, -2 on an I/O problem. */
static int read_tensor(const jval *inputs, const char *name, tensor *t) {
    jval *d = jget(inputs, name);
    if (!d) return 0;
    jval *shape = jget(d, "shape");
    t->dtype = jget(d, "dtype")->s;
    t->ndim = (int)shape->n;
    t->n = 1;
    for (int i = 0; i < t->ndim; i++) { t->shape[i] = (long long)shape->items[i]->mag; t->n *= t->shape[i]; }
    size_t nbytes = (size_t)jget(d, "nbytes")->mag;
    t->data = arena_alloc(nbytes);
    FILE *f = fopen(jget(d, "path")->s, "rb");
    if (!f) return -2;
    int ok = fseek(f, (long)jget(d, "offset")->mag, SEEK_SET) == 0 && fread(t->data, 1, nbytes, f) == nbytes;
    fclose(f);
    return ok ? 1 : -2;
}

static int write_output(const jval *outputs, const char *name, const void *data, size_t nbytes) {
    jval *d = jget(outputs, name);
    if (!d) return 0;                             /* not requested */
    FILE *f = fopen(jget(d, "path")->s, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, nbytes, f);
    fclose(f);
    return w == nbytes ? 0 : -1;
}

/* binary16 -> binary32, exact */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 31) bits = sign | 0x7F800000u | (man << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (!man) bits = sign;
    else {                                        /* subnormal: normalise */
        exp = 113;
        while (!(man & 1024)) { man <<= 1; exp--; }
        bits = sign | (exp << 23) | ((man & 1023) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ================================================================================================
 * Seeds and tie keys (HSER-4)
 * ============================================================================================== */
static uint64_t mix64(uint64_t x) {                                   /* HSER-4.3 */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t level_word(uint64_t level, uint64_t tier, uint64_t group) {   /* HSER-4.2 */
    return (level << 62) | (tier << 32) | group;
}

static uint64_t level_seed(uint64_t s, uint64_t level, uint64_t tier, uint64_t group) {  /* HSER-4.4 */
    return mix64(s ^ level_word(level, tier, group));
}

static uint64_t tie_key(uint64_t lseed, uint64_t j) { return mix64(lseed ^ j); }         /* HSER-4.5 */

/* A seed from JSON: an integer in [0, 2**64) or "0x" and 1 to 16 hex digits (HSER-4.1). */
static int parse_seed(const jval *v, uint64_t *out) {
    if (v && v->t == J_NUM && v->is_int && !v->neg && !v->int_overflow) { *out = v->mag; return 0; }
    if (v && v->t == J_NUM && v->is_int && v->neg && !v->int_overflow && v->mag == 0) { *out = 0; return 0; }
    if (v && v->t == J_STR && v->s[0] == '0' && v->s[1] == 'x') {             /* lower-case x only */
        size_t n = strlen(v->s + 2);
        uint64_t x = 0;
        int ok = n >= 1 && n <= 16;
        for (size_t i = 0; ok && i < n; i++) {
            char c = v->s[2 + i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) ok = 0;
            x = (x << 4) | (uint64_t)(d & 15);
        }
        if (ok) { *out = x; return 0; }
    }
    return reject("E_SEED", "the seed is not an integer in [0, 2**64) or a 0x-prefixed hex string of 1 to 16 digits");
}

/* ================================================================================================
 * Quantization and exact logits (HSER-2, HSER-3)
 * ============================================================================================== */
/* 127 * 128**(L-1), exact in binary64: 127, 16256, 2080768 (L = 3: hidden states only, TIER-1.5). */
static double quant_divisor(int limbs) { return limbs == 1 ? 127.0 : limbs == 2 ? 127.0 * 128.0 : 127.0 * 16384.0; }

/* Q (d) and the binary64 scale of one binary32 row (HSER-2.1 .. HSER-2.5); returns absmax. */
static float quantize_row(const float *x, long long d, int limbs, int64_t *q, double *scale) {
    float a = 0.0f;
    for (long long i = 0; i < d; i++) { float m = fabsf(x[i]); if (m > a) a = m; }
    float lift = limbs == 1 ? 1.0f : limbs == 2 ? 128.0f : 16384.0f;   /* 2**(7 (L - 1)); |Q| < 2**21 */
    float pre = a < 0x1p-64f ? 0x1p64f : 1.0f;      /* step 1: rows with a < 2**-64 scaled, exactly */
    float r = a == 0.0f ? 0.0f : 127.0f / (a * pre);  /* step 2: one division per row */
    for (long long i = 0; i < d; i++) {
        if (a == 0.0f) { q[i] = 0; continue; }
        float y = (x[i] * pre) * r;                   /* step 3: exact prescale, one rounded product */
        q[i] = (int64_t)nearbyintf(y * lift);         /* exact scaling, round half to even */
    }
    *scale = (double)a / quant_divisor(limbs);
    return a;
}

static int64_t exact_dot(const int64_t *a, const int64_t *b, long long d) {
    int64_t acc = 0;
    for (long long i = 0; i < d; i++) acc += a[i] * b[i];
    return acc;
}

static double logit(int64_t acc, double sx, double sw) { return ((double)acc * sx) * sw; }   /* HSER-3.3 */

/* ================================================================================================
 * Canonical exp, tree sum, softmax (HSER-6)
 * ============================================================================================== */
static float f32_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

static float canonical_exp(float t) {
    const float LOG2E = f32_bits(0x3FB8AA3Bu), LN2_HI = f32_bits(0x3F318000u), LN2_LO = f32_bits(0xB95E8083u);
    const uint32_t C[8] = {0x39500D01u, 0x3AB60B61u, 0x3C088889u, 0x3D2AAAABu, 0x3E2AAAABu, 0x3F000000u,
                           0x3F800000u, 0x3F800000u};            /* C7 .. C0 */
    if (t < -87.0f) return 0.0f;                                /* HSER-6.1 (also -inf) */
    float n = nearbyintf(t * LOG2E);                            /* step 1 */
    float r = (t - n * LN2_HI) - n * LN2_LO;                    /* step 2 */
    float p = f32_bits(C[0]);
    for (int k = 1; k < 8; k++) { p = p * r; p = p + f32_bits(C[k]); }   /* step 3, never fused */
    return ldexpf(p, (int)n);                                   /* step 4, exact */
}

static float tree_sum(const float *v, long long n) {           /* HSER-6.5 */
    long long P = 1;
    while (P < n) P <<= 1;
    float *w = arena_alloc((size_t)P * sizeof *w);
    for (long long i = 0; i < P; i++) w[i] = i < n ? v[i] : -0.0f;
    for (long long len = P; len > 1; len /= 2)
        for (long long i = 0; i < len / 2; i++) w[i] = w[2 * i] + w[2 * i + 1];
    return w[0];
}

static void softmax(const double *z, long long n, float *p) {  /* HSER-6.6 */
    double m = z[0];
    for (long long j = 1; j < n; j++) if (z[j] > m) m = z[j];
    float *e = arena_alloc((size_t)n * sizeof *e);
    for (long long j = 0; j < n; j++) {
        double d = z[j] - m;
        e[j] = d < -87.0 ? 0.0f : canonical_exp((float)d);
    }
    float S = tree_sum(e, n);
    for (long long j = 0; j < n; j++) p[j] = e[j] / S;
}

/* ================================================================================================
 * Ranking (HSER-5): logit descending, then tie key ascending (unsigned)
 * ============================================================================================== */
static const double *rank_z;
static const uint64_t *rank_key;

static int rank_cmp(const void *pa, const void *pb) {
    long long a = *(const long long *)pa, b = *(const long long *)pb;
    if (rank_z[a] > rank_z[b]) return -1;
    if (rank_z[a] < rank_z[b]) return 1;             /* -0.0 == +0.0 falls through to the key */
    return rank_key[a] < rank_key[b] ? -1 : rank_key[a] > rank_key[b] ? 1 : 0;
}

/* The first min(k, n) candidates, best first, into out (positions 0..n-1). Returns how many. */
static long long top_k(const double *z, const uint64_t *keys, long long n, long long k, long long *out) {
    long long *idx = arena_alloc((size_t)(n ? n : 1) * sizeof *idx);
    for (long long i = 0; i < n; i++) idx[i] = i;
    rank_z = z;
    rank_key = keys;
    qsort(idx, (size_t)n, sizeof *idx, rank_cmp);
    long long m = k < n ? k : n;
    for (long long i = 0; i < m; i++) out[i] = idx[i];
    return m;
}

/* r_j = p_j / tree_sum(p) over the chosen (HSER-8.1); a zero sum gives 1 / m each */
static void renormalise(const float *p, long long m, float *r) {
    float s = tree_sum(p, m);
    for (long long j = 0; j < m; j++) r[j] = s == 0.0f ? 1.0f / (float)m : p[j] / s;
}

/* ================================================================================================
 * Configuration (TIER-1) and TierSets (TIER-2, TIER-3)
 * ============================================================================================== */
typedef struct {
    char name[80];
    long long groups, experts;
} tier_cfg;

typedef struct {
    long long d, n_tiers, k1, k2, k3, hidden_limbs, weight_limbs;
    uint64_t seed;                     /* router.seed: the routing seed when a call gives none */
    tier_cfg *tiers;
} config;

static int only_keys(const jval *obj, const char *const *allowed) {
    for (size_t i = 0; i < obj->n; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++) ok |= !strcmp(obj->keys[i], *a);
        if (!ok) return 0;
    }
    return 1;
}

static int valid_tier_name(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z')) return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return 0;
    return 1;
}

static int is_number(const jval *v) { return v && v->t == J_NUM; }

static int parse_config(const jval *c, config *cfg) {
    static const char *const top[] = {"spec_version", "d_model", "n_layers", "n_heads", "vocab_size", "max_seq_len",
                                      "rope_theta", "norm_eps", "tiers", "router", NULL};
    static const char *const tier_keys[] = {"name", "groups", "experts_per_group", "d_ff", "placement", NULL};
    static const char *const router_keys[] = {"k_tier", "k_group", "k_expert", "hidden_limbs", "weight_limbs", "seed", NULL};
    long long n_heads, x;
    if (!c || c->t != J_OBJ || !only_keys(c, top)) return reject("E_CONFIG", "the config is not an object of known fields");
    jval *sv = jget(c, "spec_version");
    if (!sv || sv->t != J_STR || strcmp(sv->s, "0.1")) return reject("E_CONFIG", "spec_version must be \"0.1\"");
    if (!jget(c, "d_model") || !jint_field(c, "d_model", 0, 1, MAX_D_MODEL, &cfg->d))
        return reject("E_CONFIG", "d_model must be an integer in [1, 2**17]");
    if (!jint_field(c, "n_heads", 4, 1, 1LL << 40, &n_heads)) return reject("E_CONFIG", "n_heads must be an integer >= 1");
    if (!jint_field(c, "n_layers", 2, 1, 4096, &x) || !jint_field(c, "vocab_size", 256, 1, 16777216, &x) ||
        !jint_field(c, "max_seq_len", 128, 1, 1048576, &x))
        return reject("E_CONFIG", "n_layers, vocab_size or max_seq_len out of range");
    jval *rt = jget(c, "rope_theta"), *ne = jget(c, "norm_eps");
    if ((rt && (!is_number(rt) || !(rt->num > 1))) || (ne && (!is_number(ne) || !(ne->num > 0))))
        return reject("E_CONFIG", "rope_theta must be > 1 and norm_eps > 0");
    if (cfg->d % n_heads || (cfg->d / n_heads) % 2)
        return reject("E_CONFIG", "d_model=%lld must split into n_heads=%lld heads of even size", cfg->d, n_heads);
    jval *tiers = jget(c, "tiers");
    if (!tiers || tiers->t != J_ARR || tiers->n < 1 || tiers->n > MAX_TIERS)
        return reject("E_CONFIG", "tiers must be a list of 1 to 65536 tiers");
    cfg->n_tiers = (long long)tiers->n;
    cfg->tiers = arena_alloc(tiers->n * sizeof *cfg->tiers);
    for (size_t i = 0; i < tiers->n; i++) {
        jval *t = tiers->items[i], *name = jget(t, "name"), *pl = jget(t, "placement");
        long long d_ff;
        if (t->t != J_OBJ || !only_keys(t, tier_keys)) return reject("E_CONFIG", "tiers/%zu has unknown fields", i);
        if (!name || name->t != J_STR || !valid_tier_name(name->s)) return reject("E_CONFIG", "tiers/%zu/name is invalid", i);
        if (!jget(t, "groups") || !jint_field(t, "groups", 0, 1, MAX_GROUPS, &cfg->tiers[i].groups) ||
            !jget(t, "experts_per_group") || !jint_field(t, "experts_per_group", 0, 1, MAX_GROUPS, &cfg->tiers[i].experts) ||
            !jget(t, "d_ff") || !jint_field(t, "d_ff", 0, 1, MAX_GROUPS, &d_ff))
            return reject("E_CONFIG", "tiers/%zu needs groups, experts_per_group and d_ff in [1, 2**32 - 1]", i);
        if (pl && (pl->t != J_STR || (strcmp(pl->s, "HBM") && strcmp(pl->s, "DRAM") && strcmp(pl->s, "NVMe") && strcmp(pl->s, "Object"))))
            return reject("E_CONFIG", "tiers/%zu/placement is not HBM, DRAM, NVMe or Object", i);
        snprintf(cfg->tiers[i].name, sizeof cfg->tiers[i].name, "%s", name->s);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->tiers[j].name, name->s)) return reject("E_CONFIG", "tier name %s is used twice", name->s);
    }
    jval *r = jget(c, "router");
    if (!r || r->t != J_OBJ || !only_keys(r, router_keys)) return reject("E_CONFIG", "router is missing or has unknown fields");
    if (!jget(r, "k_tier") || !jget(r, "k_group") || !jget(r, "k_expert") ||
        !jint_field(r, "k_tier", 0, 1, MAX_K, &cfg->k1) || !jint_field(r, "k_group", 0, 1, MAX_K, &cfg->k2) ||
        !jint_field(r, "k_expert", 0, 1, MAX_K, &cfg->k3))
        return reject("E_CONFIG", "router/k_tier, k_group and k_expert must be integers in [1, 2**16]");
    if (cfg->k1 * cfg->k2 * cfg->k3 > MAX_K)
        return reject("E_CONFIG", "K = k_tier * k_group * k_expert = %lld exceeds 2**16", cfg->k1 * cfg->k2 * cfg->k3);
    /* TIER-1.5: 3 + 3 limbs could reach |acc| = 2**58.98 > 2**53 (HSER-3.2), so weights take at most 2 */
    if (!jint_field(r, "hidden_limbs", 2, 1, 3, &cfg->hidden_limbs))
        return reject("E_CONFIG", "router/hidden_limbs must be 1, 2 or 3");
    if (!jint_field(r, "weight_limbs", 2, 1, 2, &cfg->weight_limbs))
        return reject("E_CONFIG", "router/weight_limbs must be 1 or 2");
    jval *seed = jget(r, "seed");
    cfg->seed = 0;
    if (seed) {
        int ok = (seed->t == J_NUM && seed->is_int && !seed->int_overflow && (!seed->neg || seed->mag == 0) &&
                  seed->mag <= 9007199254740991ULL);
        if (ok) cfg->seed = seed->mag;
        if (seed->t == J_STR) ok = parse_seed(seed, &cfg->seed) == 0;
        if (!ok) return reject("E_CONFIG", "router/seed is not an integer below 2**53 or a 0x hex string of 1 to 16 digits");
    }
    return 0;
}

static long long tier_by_name(const config *cfg, const char *s) {
    for (long long t = 0; t < cfg->n_tiers; t++) if (!strcmp(cfg->tiers[t].name, s)) return t;
    return -1;
}

/* One element of a TierSet: an id, a name, or a string of digits (the harness form). */
static int tier_of(const config *cfg, const jval *v, long long *t) {
    if (v->t == J_NUM && v->is_int && !v->int_overflow && !v->neg && v->mag < (uint64_t)cfg->n_tiers) { *t = (long long)v->mag; return 0; }
    if (v->t == J_STR) {
        long long id = tier_by_name(cfg, v->s);
        if (id >= 0) { *t = id; return 0; }
        return reject("E_UNKNOWN_TIER", "tier %s is not in T_max", v->s);
    }
    return reject("E_UNKNOWN_TIER", "tier id %s%llu is not in T_max (ids 0..%lld)", v->neg ? "-" : "",
                  (unsigned long long)v->mag, cfg->n_tiers - 1);
}

/* Resolve a list of names/ids to sorted ids: unknown, then empty, then duplicate (TIER-2.2 .. 2.5). */
static int resolve_list(const config *cfg, jval **items, size_t n, long long *ids, long long *count) {
    for (size_t i = 0; i < n; i++) if (tier_of(cfg, items[i], &ids[i])) return -1;
    if (!n) return reject("E_EMPTY_TIERSET", "the TierSet is empty");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (ids[i] == ids[j]) return reject("E_DUPLICATE_TIER", "the TierSet names tier %lld twice", ids[i]);
    for (size_t i = 1; i < n; i++)                       /* insertion sort: ascending ids */
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) { long long s = ids[j]; ids[j] = ids[j - 1]; ids[j - 1] = s; }
    *count = (long long)n;
    return 0;
}

static jval *str_value(const char *s, size_t n) {
    jval *v = arena_alloc(sizeof *v);
    char *b = arena_alloc(n + 1);
    memcpy(b, s, n);
    b[n] = 0;
    size_t all_digits = n > 0;
    for (size_t i = 0; i < n; i++) all_digits &= b[i] >= '0' && b[i] <= '9';
    if (all_digits) { v->t = J_NUM; v->is_int = 1; v->mag = strtoull(b, NULL, 10); return v; }
    v->t = J_STR;
    v->s = b;
    return v;
}

static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ')) { (*s)++; (*n)--; }
    while (*n && (*s)[*n - 1] == ' ') (*n)--;
}

/* The TierSet of a request: a JSON list, or "all", "exclusive:NAME", "cumulative:NAME", "a,b,c" (TIER-3). */
static int resolve_tierset(const config *cfg, const jval *spec, long long *ids, long long *count) {
    if (!spec) return reject("E_EMPTY_TIERSET", "no TierSet given");
    if (spec->t == J_ARR) return resolve_list(cfg, spec->items, spec->n, ids, count);
    if (spec->t != J_STR) return reject("E_UNKNOWN_TIER", "the TierSet is not a list or a string");
    const char *s = spec->s;
    size_t n = strlen(s);
    trim(&s, &n);
    if (n == 3 && !strncmp(s, "all", 3)) {
        for (long long t = 0; t < cfg->n_tiers; t++) ids[t] = t;
        *count = cfg->n_tiers;
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    if (colon) {
        size_t mlen = (size_t)(colon - s), alen = n - mlen - 1;
        const char *arg = colon + 1;
        trim(&arg, &alen);
        long long t;
        if (tier_of(cfg, str_value(arg, alen), &t)) return -1;
        if (mlen == 9 && !strncmp(s, "exclusive", 9)) { ids[0] = t; *count = 1; return 0; }
        if (mlen == 10 && !strncmp(s, "cumulative", 10)) {
            for (long long i = 0; i <= t; i++) ids[i] = i;
            *count = t + 1;
            return 0;
        }
    }
    jval **items = arena_alloc((n + 1) * sizeof *items);
    size_t m = 0;
    const char *p = s, *end = s + n;
    while (p <= end) {
        const char *q = memchr(p, ',', (size_t)(end - p));
        if (!q) q = end;
        const char *part = p;
        size_t plen = (size_t)(q - p);
        trim(&part, &plen);
        if (!plen && n) return reject("E_UNKNOWN_TIER", "an empty item of a TierSet names no tier");   /* TIER-3.5 */
        if (plen) items[m++] = str_value(part, plen);
        p = q + 1;
    }
    return resolve_list(cfg, items, m, ids, count);
}

/* ================================================================================================
 * The router (HSER-7 .. HSER-9)
 * ============================================================================================== */
typedef struct { int64_t *q; double *scale; } qmatrix;           /* quantized rows of one router matrix */

static qmatrix quantize_matrix(const float *rows, long long n, long long d, int limbs) {
    qmatrix m = {arena_alloc((size_t)(n * d > 0 ? n * d : 1) * sizeof(int64_t)), arena_alloc((size_t)(n ? n : 1) * sizeof(double))};
    for (long long i = 0; i < n; i++) quantize_row(rows + i * d, d, limbs, m.q + i * d, &m.scale[i]);
    return m;
}

static int check_weight(const jval *inputs, const char *kind, long long t, const long long *shape, int ndim,
                        const char *tier_name, tensor *out) {
    char name[64];
    snprintf(name, sizeof name, "router_%s.%lld", kind, t);
    int got = read_tensor(inputs, name, out);
    if (got == 0) return reject("E_WEIGHTS", "%s router of tier %s (%s) is missing", kind, tier_name, name);
    if (got < 0) return reject("E_WEIGHTS", "cannot read %s", name);
    int same = out->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = out->shape[i] == shape[i];
    if (!same) return reject("E_WEIGHTS", "%s router of tier %s has the wrong shape", kind, tier_name);
    if (strcmp(out->dtype, "float32")) return reject("E_WEIGHTS", "%s router of tier %s is %s, not float32", kind, tier_name, out->dtype);
    const float *v = out->data;
    for (long long i = 0; i < out->n; i++)
        if (!isfinite(v[i])) return reject("E_WEIGHTS", "%s router of tier %s holds a non-finite value at flat index %lld", kind, tier_name, i);
    return 0;
}

/* The hidden states as binary32 (HSER-1.1 .. HSER-1.3): shape, then type, then finiteness. */
static int hidden_as_f32(const tensor *h, long long d, float **out, long long *T) {
    if (h->ndim != 2) return reject("E_SHAPE", "hidden states must be 2-D (T, d_model), got %d-D", h->ndim);
    if (h->shape[1] != d) return reject("E_SHAPE", "hidden states have %lld features, d_model is %lld", h->shape[1], d);
    const char *dt = h->dtype;
    if (strcmp(dt, "float16") && strcmp(dt, "bfloat16") && strcmp(dt, "float32") && strcmp(dt, "float64"))
        return reject("E_DTYPE", "hidden states have dtype %s; expected a binary floating type", dt);
    float *x = arena_alloc((size_t)(h->n ? h->n : 1) * sizeof *x);
    for (long long i = 0; i < h->n; i++) {
        if (!strcmp(dt, "float32")) x[i] = ((const float *)h->data)[i];
        else if (!strcmp(dt, "float64")) x[i] = (float)((const double *)h->data)[i];   /* round to nearest even */
        else if (!strcmp(dt, "float16")) x[i] = half_to_float(((const uint16_t *)h->data)[i]);
        else x[i] = bf16_to_float(((const uint16_t *)h->data)[i]);
        if (!isfinite(x[i])) return reject("E_NONFINITE", "hidden states hold a non-finite value at token %lld, feature %lld", i / d, i % d);
    }
    *out = x;
    *T = h->shape[0];
    return 0;
}

static int op_route(const jval *msg) {
    const jval *inputs = jget(msg, "inputs"), *params = jget(msg, "params"), *outputs = jget(msg, "outputs");
    config cfg;
    if (parse_config(jget(msg, "config"), &cfg)) return -1;
    long long d = cfg.d, M = cfg.n_tiers;
    /* router weights (HSER-1.4), quantized row by row (HSER-2.6) */
    qmatrix *w1 = arena_alloc((size_t)M * sizeof *w1), *w2 = arena_alloc((size_t)M * sizeof *w2);
    qmatrix **w3 = arena_alloc((size_t)M * sizeof *w3);
    for (long long t = 0; t < M; t++) {
        tensor a, b, c;
        long long G = cfg.tiers[t].groups, E = cfg.tiers[t].experts;
        long long s1[1] = {d}, s2[2] = {G, d}, s3[3] = {G, E, d};
        if (check_weight(inputs, "tier", t, s1, 1, cfg.tiers[t].name, &a) ||
            check_weight(inputs, "group", t, s2, 2, cfg.tiers[t].name, &b) ||
            check_weight(inputs, "expert", t, s3, 3, cfg.tiers[t].name, &c)) return -1;
        int L = (int)cfg.weight_limbs;
        w1[t] = quantize_matrix(a.data, 1, d, L);
        w2[t] = quantize_matrix(b.data, G, d, L);
        w3[t] = arena_alloc((size_t)G * sizeof **w3);
        for (long long g = 0; g < G; g++) w3[t][g] = quantize_matrix((const float *)c.data + g * E * d, E, d, L);
    }
    /* checks in the order of HSER-10.3: seed, TierSet, hidden shape, type, finiteness */
    uint64_t seed = cfg.seed;                                  /* HSER-4.1: the config's seed by default */
    jval *given = jget(params, "seed");
    if (given && given->t != J_NULL && parse_seed(given, &seed)) return -1;      /* null: absent */
    long long *cands = arena_alloc((size_t)(M + 1) * sizeof *cands), n1;
    jval *ts = jget(params, "tierset");
    if (ts && ts->t == J_ARR && ts->n > (size_t)M) cands = arena_alloc((ts->n + 1) * sizeof *cands);
    if (resolve_tierset(&cfg, ts, cands, &n1)) return -1;
    tensor h;
    if (read_tensor(inputs, "hidden", &h) <= 0) return reject("E_SHAPE", "no hidden states");
    float *x = NULL;
    long long T = 0;
    if (hidden_as_f32(&h, d, &x, &T)) return -1;

    long long k1 = cfg.k1, k2 = cfg.k2, k3 = cfg.k3, K = k1 * k2 * k3, Gmax = 0, Emax = 0;
    for (long long i = 0; i < n1; i++) {
        if (cfg.tiers[cands[i]].groups > Gmax) Gmax = cfg.tiers[cands[i]].groups;
        if (cfg.tiers[cands[i]].experts > Emax) Emax = cfg.tiers[cands[i]].experts;
    }
    int32_t *tier = arena_alloc((size_t)(T * K + 1) * 4), *group = arena_alloc((size_t)(T * K + 1) * 4);
    int32_t *expert = arena_alloc((size_t)(T * K + 1) * 4), *count = arena_alloc((size_t)(T + 1) * 4);
    float *gate = arena_alloc((size_t)(T * K + 1) * 4), *tier_probs = arena_alloc((size_t)(T * n1 + 1) * 4);
    int32_t *chosen_tiers = arena_alloc((size_t)(T * k1 + 1) * 4), *chosen_groups = arena_alloc((size_t)(T * k1 * k2 + 1) * 4);
    float *group_probs = arena_alloc((size_t)(T * k1 * Gmax + 1) * 4), *expert_probs = arena_alloc((size_t)(T * k1 * k2 * Emax + 1) * 4);
    for (long long i = 0; i < T * K; i++) tier[i] = group[i] = expert[i] = -1;
    for (long long i = 0; i < T * k1; i++) chosen_tiers[i] = -1;
    for (long long i = 0; i < T * k1 * k2; i++) chosen_groups[i] = -1;

    int64_t *qx = arena_alloc((size_t)d * sizeof *qx);
    long long maxc = n1 > Gmax ? n1 : Gmax;
    if (Emax > maxc) maxc = Emax;
    double *z = arena_alloc((size_t)maxc * sizeof *z);
    uint64_t *keys = arena_alloc((size_t)maxc * sizeof *keys);
    float *p = arena_alloc((size_t)maxc * sizeof *p);
    long long *top = arena_alloc((size_t)maxc * sizeof *top);
    float *p1 = arena_alloc((size_t)k1 * 4), *r1 = arena_alloc((size_t)k1 * 4);
    float *p2 = arena_alloc((size_t)k2 * 4), *r2 = arena_alloc((size_t)k2 * 4);
    float *p3 = arena_alloc((size_t)k3 * 4), *r3 = arena_alloc((size_t)k3 * 4);
    long long *pos1 = arena_alloc((size_t)maxc * sizeof *pos1), *gsel = arena_alloc((size_t)maxc * sizeof *gsel);
    uint64_t s1 = level_seed(seed, 1, 0, 0);

    for (long long n = 0; n < T; n++) {
        double sx;
        quantize_row(x + n * d, d, (int)cfg.hidden_limbs, qx, &sx);
        /* level 1: the TierSet's tiers in ascending id (HSER-7.1) */
        for (long long i = 0; i < n1; i++) {
            long long t = cands[i];
            z[i] = logit(exact_dot(qx, w1[t].q, d), sx, w1[t].scale[0]);
            keys[i] = tie_key(s1, (uint64_t)t);
        }
        softmax(z, n1, tier_probs + n * n1);
        long long m1 = top_k(z, keys, n1, k1, top);
        long long slot = 0;
        for (long long a = 0; a < m1; a++) { pos1[a] = top[a]; p1[a] = tier_probs[n * n1 + top[a]]; }
        renormalise(p1, m1, r1);
        for (long long a = 0; a < m1; a++) {
            long long t = cands[pos1[a]], G = cfg.tiers[t].groups, E = cfg.tiers[t].experts;
            chosen_tiers[n * k1 + a] = (int32_t)t;
            /* level 2: the groups of tier t (HSER-7.2) */
            uint64_t s2 = level_seed(seed, 2, (uint64_t)t, 0);
            for (long long g = 0; g < G; g++) {
                z[g] = logit(exact_dot(qx, w2[t].q + g * d, d), sx, w2[t].scale[g]);
                keys[g] = tie_key(s2, (uint64_t)g);
            }
            float *gp = group_probs + (n * k1 + a) * Gmax;
            softmax(z, G, gp);
            long long m2 = top_k(z, keys, G, k2, gsel);
            for (long long b = 0; b < m2; b++) { chosen_groups[(n * k1 + a) * k2 + b] = (int32_t)gsel[b]; p2[b] = gp[gsel[b]]; }
            renormalise(p2, m2, r2);
            for (long long b = 0; b < m2; b++) {
                long long g = gsel[b];
                /* level 3: the experts of group g of tier t (HSER-7.3) */
                uint64_t s3 = level_seed(seed, 3, (uint64_t)t, (uint64_t)g);
                for (long long e = 0; e < E; e++) {
                    z[e] = logit(exact_dot(qx, w3[t][g].q + e * d, d), sx, w3[t][g].scale[e]);
                    keys[e] = tie_key(s3, (uint64_t)e);
                }
                float *ep = expert_probs + ((n * k1 + a) * k2 + b) * Emax;
                softmax(z, E, ep);
                long long m3 = top_k(z, keys, E, k3, top);
                for (long long c = 0; c < m3; c++) p3[c] = ep[top[c]];
                renormalise(p3, m3, r3);
                /* gates (HSER-8.2) and the active set in nested rank order (HSER-9.2) */
                for (long long c = 0; c < m3; c++, slot++) {
                    tier[n * K + slot] = (int32_t)t;
                    group[n * K + slot] = (int32_t)g;
                    expert[n * K + slot] = (int32_t)top[c];
                    gate[n * K + slot] = (r1[a] * r2[b]) * r3[c];
                }
            }
        }
        count[n] = (int32_t)slot;
    }
    if (write_output(outputs, "tier", tier, (size_t)(T * K) * 4) || write_output(outputs, "group", group, (size_t)(T * K) * 4) ||
        write_output(outputs, "expert", expert, (size_t)(T * K) * 4) || write_output(outputs, "gate", gate, (size_t)(T * K) * 4) ||
        write_output(outputs, "count", count, (size_t)T * 4) || write_output(outputs, "tier_probs", tier_probs, (size_t)(T * n1) * 4) ||
        write_output(outputs, "chosen_tiers", chosen_tiers, (size_t)(T * k1) * 4) ||
        write_output(outputs, "group_probs", group_probs, (size_t)(T * k1 * Gmax) * 4) ||
        write_output(outputs, "chosen_groups", chosen_groups, (size_t)(T * k1 * k2) * 4) ||
        write_output(outputs, "expert_probs", expert_probs, (size_t)(T * k1 * k2 * Emax) * 4))
        return -2;
    int32_t *tier_set = arena_alloc((size_t)(n1 + 1) * 4);
    for (long long i = 0; i < n1; i++) tier_set[i] = (int32_t)cands[i];
    return write_output(outputs, "tier_set", tier_set, (size_t)n1 * 4) ? -2 : 0;
}

static int op_tier_set(const jval *msg) {
    config cfg;
    if (parse_config(jget(msg, "config"), &cfg)) return -1;
    jval *spec = jget(jget(msg, "params"), "tierset");
    size_t cap = (size_t)cfg.n_tiers + (spec && spec->t == J_ARR ? spec->n : 0) + (spec && spec->t == J_STR ? strlen(spec->s) : 0) + 1;
    long long *ids = arena_alloc(cap * sizeof *ids), n;
    if (resolve_tierset(&cfg, spec, ids, &n)) return -1;
    int32_t *out = arena_alloc((size_t)(n + 1) * 4);
    for (long long i = 0; i < n; i++) out[i] = (int32_t)ids[i];
    return write_output(jget(msg, "outputs"), "tiers", out, (size_t)n * 4) ? -2 : 0;
}

/* ================================================================================================
 * The pieces, one operation each (the routing/op/... cases)
 * ============================================================================================== */
static int need(const jval *msg, const char *name, tensor *t) {
    if (read_tensor(jget(msg, "inputs"), name, t) <= 0) return reject("E_SHAPE", "input %s is missing", name);
    return 0;
}

static long long param_int(const jval *msg, const char *name) {
    jval *v = jget(jget(msg, "params"), name);
    return v ? (long long)v->mag : 0;
}

static int op_quantize(const jval *msg) {
    tensor x;
    if (need(msg, "x", &x)) return -1;
    long long n = x.shape[0], d = x.shape[1];
    int L = (int)param_int(msg, "limbs");
    int64_t *q = arena_alloc((size_t)(n * d + 1) * 8);
    float *a = arena_alloc((size_t)(n + 1) * 4);
    double *s = arena_alloc((size_t)(n + 1) * 8);
    for (long long i = 0; i < n; i++) a[i] = quantize_row((const float *)x.data + i * d, d, L, q + i * d, &s[i]);
    const jval *o = jget(msg, "outputs");
    return write_output(o, "q", q, (size_t)(n * d) * 8) || write_output(o, "absmax", a, (size_t)n * 4) ||
           write_output(o, "scale", s, (size_t)n * 8) ? -2 : 0;
}

static int op_logits(const jval *msg) {
    tensor x, w;
    if (need(msg, "x", &x) || need(msg, "w", &w)) return -1;
    long long T = x.shape[0], n = w.shape[0], d = x.shape[1];
    qmatrix qx = quantize_matrix(x.data, T, d, (int)param_int(msg, "hidden_limbs"));
    qmatrix qw = quantize_matrix(w.data, n, d, (int)param_int(msg, "weight_limbs"));
    int64_t *acc = arena_alloc((size_t)(T * n + 1) * 8);
    double *z = arena_alloc((size_t)(T * n + 1) * 8);
    for (long long i = 0; i < T; i++)
        for (long long j = 0; j < n; j++) {
            acc[i * n + j] = exact_dot(qx.q + i * d, qw.q + j * d, d);
            z[i * n + j] = logit(acc[i * n + j], qx.scale[i], qw.scale[j]);
        }
    const jval *o = jget(msg, "outputs");
    return write_output(o, "acc", acc, (size_t)(T * n) * 8) || write_output(o, "z", z, (size_t)(T * n) * 8) ? -2 : 0;
}

static int op_mix64(const jval *msg) {
    tensor x;
    if (need(msg, "x", &x)) return -1;
    uint64_t *y = arena_alloc((size_t)(x.n + 1) * 8);
    for (long long i = 0; i < x.n; i++) y[i] = mix64(((const uint64_t *)x.data)[i]);
    return write_output(jget(msg, "outputs"), "y", y, (size_t)x.n * 8) ? -2 : 0;
}

static int op_level_seed(const jval *msg) {
    tensor s, l, t, g;
    if (need(msg, "seed", &s) || need(msg, "level", &l) || need(msg, "tier", &t) || need(msg, "group", &g)) return -1;
    uint64_t *y = arena_alloc((size_t)(s.n + 1) * 8);
    for (long long i = 0; i < s.n; i++) {                       /* HSER-4.2: the word's fields */
        uint64_t lv = ((uint64_t *)l.data)[i], tv = ((uint64_t *)t.data)[i], gv = ((uint64_t *)g.data)[i];
        if (lv < 1 || lv > 3 || tv >= (1ULL << 16) || gv >= (1ULL << 32))
            return reject("E_SEED", "no level word for level %llu, tier %llu, group %llu", (unsigned long long)lv,
                          (unsigned long long)tv, (unsigned long long)gv);
    }
    for (long long i = 0; i < s.n; i++)
        y[i] = level_seed(((uint64_t *)s.data)[i], ((uint64_t *)l.data)[i], ((uint64_t *)t.data)[i], ((uint64_t *)g.data)[i]);
    return write_output(jget(msg, "outputs"), "level_seed", y, (size_t)s.n * 8) ? -2 : 0;
}

static int op_tie_keys(const jval *msg) {
    tensor s;
    if (need(msg, "level_seed", &s)) return -1;
    long long n = param_int(msg, "n");
    uint64_t *k = arena_alloc((size_t)(s.n * n + 1) * 8);
    for (long long b = 0; b < s.n; b++)
        for (long long j = 0; j < n; j++) k[b * n + j] = tie_key(((uint64_t *)s.data)[b], (uint64_t)j);
    return write_output(jget(msg, "outputs"), "keys", k, (size_t)(s.n * n) * 8) ? -2 : 0;
}

static int op_canonical_exp(const jval *msg) {
    tensor t;
    if (need(msg, "t", &t)) return -1;
    float *y = arena_alloc((size_t)(t.n + 1) * 4);
    for (long long i = 0; i < t.n; i++) {                       /* HSER-6.1: the domain is t <= 0 */
        float v = ((const float *)t.data)[i];
        if (v != v || v > 0.0f) return reject("E_NONFINITE", "canonical_exp of element %lld: outside t <= 0", i);
    }
    for (long long i = 0; i < t.n; i++) y[i] = canonical_exp(((const float *)t.data)[i]);
    return write_output(jget(msg, "outputs"), "y", y, (size_t)t.n * 4) ? -2 : 0;
}

static int op_tree_sum(const jval *msg) {
    tensor v;
    if (need(msg, "v", &v)) return -1;
    long long B = v.shape[0], n = v.shape[1];
    float *s = arena_alloc((size_t)(B + 1) * 4);
    for (long long b = 0; b < B; b++) s[b] = tree_sum((const float *)v.data + b * n, n);
    return write_output(jget(msg, "outputs"), "sum", s, (size_t)B * 4) ? -2 : 0;
}

static int op_softmax(const jval *msg) {
    tensor z;
    if (need(msg, "z", &z)) return -1;
    long long B = z.shape[0], n = z.shape[1];
    float *p = arena_alloc((size_t)(B * n + 1) * 4);
    for (long long b = 0; b < B; b++) softmax((const double *)z.data + b * n, n, p + b * n);
    return write_output(jget(msg, "outputs"), "p", p, (size_t)(B * n) * 4) ? -2 : 0;
}

static int op_top_k(const jval *msg) {
    tensor z, keys;
    if (need(msg, "z", &z) || need(msg, "keys", &keys)) return -1;
    long long B = z.shape[0], n = z.shape[1], k = param_int(msg, "k"), m = k < n ? k : n;
    int32_t *idx = arena_alloc((size_t)(B * m + 1) * 4);
    long long *top = arena_alloc((size_t)(n + 1) * sizeof *top);
    for (long long b = 0; b < B; b++) {
        top_k((const double *)z.data + b * n, keys.data, n, k, top);
        for (long long i = 0; i < m; i++) idx[b * m + i] = (int32_t)top[i];
    }
    return write_output(jget(msg, "outputs"), "index", idx, (size_t)(B * m) * 4) ? -2 : 0;
}

static int op_renormalise(const jval *msg) {
    tensor p;
    if (need(msg, "p", &p)) return -1;
    long long B = p.shape[0], m = p.shape[1];
    float *r = arena_alloc((size_t)(B * m + 1) * 4);
    for (long long b = 0; b < B; b++) renormalise((const float *)p.data + b * m, m, r + b * m);
    return write_output(jget(msg, "outputs"), "r", r, (size_t)(B * m) * 4) ? -2 : 0;
}

/* ================================================================================================
 * The protocol loop (CONF-4): start / run / stop, one JSON object per line
 * ============================================================================================== */
typedef struct { const char *name; int (*fn)(const jval *); } operation;

static const operation OPS[] = {
    {"route", op_route}, {"tier_set", op_tier_set}, {"quantize", op_quantize}, {"logits", op_logits},
    {"mix64", op_mix64}, {"level_seed", op_level_seed}, {"tie_keys", op_tie_keys},
    {"canonical_exp", op_canonical_exp}, {"tree_sum", op_tree_sum}, {"softmax", op_softmax},
    {"top_k", op_top_k}, {"renormalise", op_renormalise},
};
#define N_OPS (sizeof OPS / sizeof OPS[0])

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        const char *perr = NULL;
        jval *msg = jparse(line, &perr);
        const char *cmd = msg ? (jget(msg, "cmd") ? jget(msg, "cmd")->s : NULL) : NULL;
        if (!msg || !cmd) {
            fprintf(stderr, "c_router: unreadable message (%s)\n", perr ? perr : "no cmd");
            return 1;
        }
        if (!strcmp(cmd, "start")) {
            printf("{\"ok\":true,\"implementation\":{\"name\":\"c-router\",\"version\":\"0.1\",\"language\":\"c\",\"operations\":[");
            for (size_t i = 0; i < N_OPS; i++) printf("%s\"%s\"", i ? "," : "", OPS[i].name);
            printf("]}}\n");
        } else if (!strcmp(cmd, "stop")) {
            break;
        } else {
            long long seq = (long long)jget(msg, "seq")->mag;
            const char *op = jget(msg, "operation")->s;
            const operation *found = NULL;
            for (size_t i = 0; i < N_OPS; i++) if (!strcmp(OPS[i].name, op)) found = &OPS[i];
            if (!found) {
                printf("{\"seq\":%lld,\"skipped\":{\"reason\":\"operation not offered\"}}\n", seq);
            } else {
                int rc = found->fn(msg);
                if (rc == 0) printf("{\"seq\":%lld,\"result\":{}}\n", seq);
                else if (rc == -1) {
                    printf("{\"seq\":%lld,\"result\":{\"error\":{\"code\":", seq);
                    jwrite_string(stdout, err_code);
                    printf(",\"message\":");
                    jwrite_string(stdout, err_msg);
                    printf("}}}\n");
                } else printf("{\"seq\":%lld,\"errored\":{\"message\":\"cannot read an input or write an output\"}}\n", seq);
            }
        }
        fflush(stdout);
        arena_reset();
    }
    free(line);
    return 0;
}
