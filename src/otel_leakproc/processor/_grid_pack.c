/* _grid_pack: the loops of state version 8's grid packing (history.py `values_by_width`, `tied_of_ties`,
 * `ties_of_tied`), whose numpy forms stay the reference and the path of what these do not take.
 *
 * A grid export lists each point's values by id. Version 8 writes their 16-bit codes as each name's floor
 * and the differences from it grouped by width, and of the 2-bit tie fields (packed four to a byte, low
 * bits first, by export index) only those of the values in runs: a run is two or more values of one point
 * with one key, which the value order (key descending, then id) cannot tell apart. Stored are the fields
 * of runs of 2 to 4 in points not kept whole, in value order (runs by key descending, a run's values by
 * id), all but each run's last (its position is the one the others leave); every other field is 0. Each
 * numpy form is a dozen passes over the whole export through temporaries, and sorts every point; here
 * each finds a point's runs in one pass over its keys and orders the runs alone (by key, then a run's few
 * values by id).
 *
 * Finding the runs. Keys of 16 bits or less (a grid's codes: every grid that writes tie fields) in points of
 * at most 65,535 values have an entry each in a table from the grid's least key to its largest (at most
 * 256 KiB; one pass over the keys finds them): the stamp of the last point that saw the key and the index of
 * its last value there. A point takes the next stamp (nothing is cleared between points; the table once every
 * 32,767 points), and one pass without a branch on the keys stamps each key with its value's index, noting
 * each value whose key the point saw before with the index of the value before it; only those values (a few
 * per point, none where the keys are distinct) are visited again, each following its predecessor into a run.
 * Wider keys, and points of more values, go through a hash table per point (Fibonacci hashing, at most half
 * full). Either way the runs (a value's next of its key, by export order, chained in `next`) are then put in
 * order of key descending: those of narrow keys (up to 16 in a point) each at its rank, the count of larger
 * keys counted without a branch; others sorted (insertion, or qsort past 16).
 *
 *   tied_of_ties(lengths, ids, keys, ties, whole) -> bytearray | None | NotImplemented
 *       The stored fields, packed, from the fields by export index (`ties`); None where the fields are
 *       not what `ties_of_tied` gives back; NotImplemented where a run of 2 to 4 has one id twice (the
 *       value order does not say which comes first: the numpy form's business).
 *   ties_of_tied(lengths, ids, keys, tied, whole) -> bytearray | NotImplemented
 *       The inverse: every value's field, packed by export index. ValueError when `tied` is not as long
 *       as the count of stored fields needs.
 *   width_groups(codes, names) -> (floor, widths, {width: differences})
 *       For codes (int16, uint16 or int32) of every name at every point (a points x names table, by id):
 *       per name its least code (in the codes' type) and the bits of its largest difference from it (uint8,
 *       0 to 16); per width present but 0 the differences of its names' values, point by point and by id
 *       (uint8 up to 8 bits, else native uint16).
 *
 * lengths, ids, keys and whole (the points kept whole, any order) are C-contiguous arrays of native
 * integers (8 to 64 bits; keys and whole signed or unsigned up to 32 bits, or int64), read as they are: no
 * copies to convert. ties/tied: bytes. An array of another type, counts that do not add up, a whole point
 * out of range and a difference wider than 16 bits raise ValueError naming what is wrong; nothing is read
 * outside its buffer. Every function holds the GIL throughout.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WIDTH 16

static inline int field_at(const uint8_t *packed, Py_ssize_t i) {
    return (packed[i >> 2] >> ((i & 3) << 1)) & 3;
}

/* -- native integer arrays ------------------------------------------------------------------------------ */

enum { I8, U8, I16, U16, I32, U32, I64 };

typedef struct {
    Py_buffer view;
    int kind;
    Py_ssize_t n;
    int open;
} Ints;

/* Opens `obj` as a contiguous array of native integers; ValueError naming `what` when it is not one. */
static int ints_open(PyObject *obj, Ints *x, const char *what) {
    memset(x, 0, sizeof(*x));
    if (PyObject_GetBuffer(obj, &x->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "grid pack: %s must be a contiguous array of integers", what);
        return -1;
    }
    x->open = 1;
    const char *f = x->view.format ? x->view.format : "B";
    if (*f == '@' || *f == '=') {
        f++;
    }
    Py_ssize_t size = x->view.itemsize;
    int kind = -1;
    if (f[0] && !f[1]) {
        switch (f[0]) {
            case 'b': kind = size == 1 ? I8 : -1; break;
            case 'B': kind = size == 1 ? U8 : -1; break;
            case 'h': kind = size == 2 ? I16 : -1; break;
            case 'H': kind = size == 2 ? U16 : -1; break;
            case 'i': kind = size == 4 ? I32 : -1; break;
            case 'I': kind = size == 4 ? U32 : -1; break;
            case 'l': case 'q': kind = size == 8 ? I64 : size == 4 ? I32 : -1; break;
            default: break;
        }
    }
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError, "grid pack: %s of format '%s' (%zd bytes each): expected native integers, "
                     "signed of 8 to 64 bits or unsigned of 8 to 32", what, x->view.format ? x->view.format : "B",
                     size);
        return -1;
    }
    x->kind = kind;
    x->n = x->view.len / size;
    return 0;
}

static void ints_release(Ints *x) {
    if (x->open) {
        PyBuffer_Release(&x->view);
        x->open = 0;
    }
}

static inline int64_t ints_at(const Ints *x, Py_ssize_t i) {
    const void *b = x->view.buf;
    switch (x->kind) {
        case I8: return ((const int8_t *)b)[i];
        case U8: return ((const uint8_t *)b)[i];
        case I16: return ((const int16_t *)b)[i];
        case U16: return ((const uint16_t *)b)[i];
        case I32: return ((const int32_t *)b)[i];
        case U32: return ((const uint32_t *)b)[i];
        default: return ((const int64_t *)b)[i];
    }
}

/* -- the runs of a point --------------------------------------------------------------------------------- */

typedef struct {
    int64_t key;
    int32_t size, first, last; /* its values: `first`, then by `next` (export order), `size` in all (`size`
                                * apart from `last`: the two are not stored as one, then read apart) */
} Run;

/* The buffers of a tie call, checked against each other, and the scratch of one point. */
typedef struct {
    Ints lengths, ids, keys, whole;
    Py_buffer fields;
    int fields_open;
    Py_ssize_t points, n, widest;
    uint8_t *is_whole; /* a flag per point */
    int32_t *slot;     /* keys wider than 16 bits: the hash table: -1 empty, a value's index (a key seen
                        * once), -2 - a run's index */
    int small;         /* keys of 16 bits or less in points of at most 65,535 values: by a table */
    int32_t lo, span;  /* ... the least key, and the largest less it plus 1 */
    uint32_t *table;   /* ... an entry per key from `lo` (see SMALL_RUNS) */
    uint32_t stamp;    /* ... the last point's stamp */
    int32_t *again;    /* ... the values of a key seen before in the point */
    uint32_t *prior;   /* ... and the entries of their keys then */
    uint16_t *run_of;  /* ... per value last of a run left, the run's index + 1 (all 0 between points) */
    int32_t *next;     /* per value in a run: the next value of its key */
    Run *runs;
    int32_t *order;    /* the point's runs by key descending (indexes in `runs`) */
} Ties;

static void ties_release(Ties *x) {
    ints_release(&x->lengths);
    ints_release(&x->ids);
    ints_release(&x->keys);
    ints_release(&x->whole);
    if (x->fields_open) {
        PyBuffer_Release(&x->fields);
    }
    PyMem_Free(x->is_whole);
    PyMem_Free(x->slot);
    PyMem_Free(x->table);
    PyMem_Free(x->again);
    PyMem_Free(x->prior);
    PyMem_Free(x->run_of);
    PyMem_Free(x->next);
    PyMem_Free(x->runs);
    PyMem_Free(x->order);
}

/* The hash table's size for a point of `count` values: at most half full. */
static Py_ssize_t table_size(Py_ssize_t count) {
    Py_ssize_t size = 8;
    while (size < 2 * count) {
        size <<= 1;
    }
    return size;
}

/* The least and largest of `n` keys into `lo`, `hi` (32 at a time: the compiler makes vectors of them). */
#define KEY_RANGE(T)                                                                            \
    static void range_##T(const T *key, Py_ssize_t n, int32_t *lo, int32_t *hi) {               \
        T least[32], most[32];                                                                  \
        for (int j = 0; j < 32; j++) {                                                          \
            least[j] = most[j] = n ? key[0] : 0;                                                \
        }                                                                                       \
        Py_ssize_t i = 0;                                                                       \
        for (; i + 32 <= n; i += 32) {                                                          \
            for (int j = 0; j < 32; j++) {                                                      \
                const T v = key[i + j];                                                         \
                least[j] = v < least[j] ? v : least[j];                                         \
                most[j] = v > most[j] ? v : most[j];                                            \
            }                                                                                   \
        }                                                                                       \
        for (; i < n; i++) {                                                                    \
            least[0] = key[i] < least[0] ? key[i] : least[0];                                   \
            most[0] = key[i] > most[0] ? key[i] : most[0];                                      \
        }                                                                                       \
        for (int j = 1; j < 32; j++) {                                                          \
            least[0] = least[j] < least[0] ? least[j] : least[0];                               \
            most[0] = most[j] > most[0] ? most[j] : most[0];                                    \
        }                                                                                       \
        *lo = least[0];                                                                         \
        *hi = most[0];                                                                          \
    }

KEY_RANGE(int8_t)
KEY_RANGE(uint8_t)
KEY_RANGE(int16_t)
KEY_RANGE(uint16_t)

static int ties_open(Ties *x, PyObject *args) {
    memset(x, 0, sizeof(*x));
    PyObject *lengths, *ids, *keys, *whole;
    if (!PyArg_ParseTuple(args, "OOOy*O", &lengths, &ids, &keys, &x->fields, &whole)) {
        return -1;
    }
    x->fields_open = 1;
    if (ints_open(lengths, &x->lengths, "lengths") < 0 || ints_open(ids, &x->ids, "ids") < 0 ||
        ints_open(keys, &x->keys, "keys") < 0 || ints_open(whole, &x->whole, "whole points") < 0) {
        return -1;
    }
    if (x->ids.n != x->keys.n) {
        PyErr_Format(PyExc_ValueError, "grid pack: %zd ids for %zd keys", x->ids.n, x->keys.n);
        return -1;
    }
    x->points = x->lengths.n;
    Py_ssize_t n = x->keys.n, total = 0, widest = 0;
    for (Py_ssize_t p = 0; p < x->points; p++) {
        int64_t count = ints_at(&x->lengths, p);
        if (count < 0 || count > n - total) {
            PyErr_Format(PyExc_ValueError, "grid pack: point %zd has %lld values, past the %zd values", p,
                         (long long)count, n);
            return -1;
        }
        total += (Py_ssize_t)count;
        widest = count > widest ? (Py_ssize_t)count : widest;
    }
    if (total != n) {
        PyErr_Format(PyExc_ValueError, "grid pack: lengths add up to %zd, not the %zd keys", total, n);
        return -1;
    }
    if (widest > INT32_MAX / 4) {
        PyErr_Format(PyExc_ValueError, "grid pack: a point of %zd values", widest);
        return -1;
    }
    x->n = n;
    x->widest = widest;
    x->is_whole = PyMem_Calloc((size_t)x->points + 1, 1);
    x->small = x->keys.kind <= U16 && widest <= UINT16_MAX;
    if (x->small) {
        int32_t hi = 0;
        switch (x->keys.kind) {
            case I8: range_int8_t(x->keys.view.buf, n, &x->lo, &hi); break;
            case U8: range_uint8_t(x->keys.view.buf, n, &x->lo, &hi); break;
            case I16: range_int16_t(x->keys.view.buf, n, &x->lo, &hi); break;
            default: range_uint16_t(x->keys.view.buf, n, &x->lo, &hi); break;
        }
        x->span = hi - x->lo + 1;
        x->table = PyMem_Calloc((size_t)x->span, sizeof(uint32_t));
        x->again = PyMem_Malloc(sizeof(int32_t) * ((size_t)widest + 1));
        x->prior = PyMem_Malloc(sizeof(uint32_t) * ((size_t)widest + 1));
        x->run_of = PyMem_Calloc((size_t)widest + 1, sizeof(uint16_t));
    } else {
        x->slot = PyMem_Malloc(sizeof(int32_t) * (size_t)table_size(widest));
    }
    x->next = PyMem_Malloc(sizeof(int32_t) * ((size_t)widest + 1));
    x->runs = PyMem_Malloc(sizeof(Run) * ((size_t)widest / 2 + 1));
    x->order = PyMem_Malloc(sizeof(int32_t) * ((size_t)widest / 2 + 1));
    const int small_ok = x->table && x->again && x->prior && x->run_of;
    if (!x->is_whole || !(x->slot || small_ok) || !x->next || !x->runs || !x->order) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < x->whole.n; i++) {
        int64_t p = ints_at(&x->whole, i);
        if (p < 0 || p >= x->points) {
            PyErr_SetString(PyExc_ValueError, "grid ties: whole points out of range");
            return -1;
        }
        x->is_whole[p] = 1;
    }
    return 0;
}

/* The runs of a point's keys (`key`, `count` of them, 2 to 65,535) of 16 bits or less, unordered, into
 * x->runs: their count. Each key has an entry in x->table (from the least key, x->lo, to the largest): the
 * stamp of the last point that saw it (bits 17 on: an entry of an older stamp is of a key not seen in this
 * point, so nothing is cleared between points) and the index of its last value there. A pass stamps each
 * value's key with its index, and notes in `again` (with `prior`, the entry it found) each value whose key
 * the point saw before: without a branch on the keys, and the entry stored whatever it was. Those values
 * alone (none where the keys are distinct) are then visited again: each follows the value before it of its
 * key (`prior`'s index), which is the last one's (a run's values in a row), starts a run (the key's first
 * value: `run_of` 0) or is the last of one left before (`run_of`: its index + 1, set as it was left and
 * cleared after). */
#define STAMP_SHIFT 17
#define STAMP_LAST ((1u << (32 - STAMP_SHIFT)) - 1)
#define STAMP(k)                                                        \
    do {                                                                \
        uint32_t *e = table + (uint32_t)((int32_t)key[k] - lo);        \
        const uint32_t was = *e;                                        \
        *e = stamped | (uint32_t)(k);                                  \
        again[repeats] = (k);                                           \
        prior[repeats] = was;                                           \
        repeats += was >= stamped; /* (older stamps are less) */        \
    } while (0)
#define SMALL_RUNS(T)                                                                           \
    static Py_ssize_t small_runs_##T(Ties *x, const T *key, int32_t count) {                   \
        uint32_t *table = x->table, *prior = x->prior;                                         \
        const int32_t lo = x->lo;                                                              \
        if (x->stamp == STAMP_LAST) { /* (every 32,767 points) */                              \
            memset(table, 0, sizeof(uint32_t) * (size_t)x->span);                              \
            x->stamp = 0;                                                                       \
        }                                                                                       \
        const uint32_t stamped = ++x->stamp << STAMP_SHIFT;                                    \
        int32_t *again = x->again;                                                              \
        size_t repeats = 0;                                                                     \
        int32_t k = 0;                                                                          \
        for (; k + 4 <= count; k += 4) { /* (four at a time: the loop's own work shared) */    \
            STAMP(k);                                                                           \
            STAMP(k + 1);                                                                       \
            STAMP(k + 2);                                                                       \
            STAMP(k + 3);                                                                       \
        }                                                                                       \
        for (; k < count; k++) {                                                                \
            STAMP(k);                                                                           \
        }                                                                                       \
        int32_t *next = x->next;                                                                \
        uint16_t *run_of = x->run_of;                                                           \
        Run *runs = x->runs;                                                                    \
        Py_ssize_t r = 0;                                                                       \
        Run *run = NULL;                                                                        \
        int32_t last = -1, in = 0, size = 0;                                                    \
        size_t written = 0;                                                                     \
        for (size_t j = 0; j < repeats; j++) {                                                  \
            const int32_t k = again[j], before = (int32_t)(prior[j] & 0xFFFF);                 \
            if (before != last) { /* another run than the last one's: that one left */          \
                if (run) {                                                                      \
                    run->size = size;                                                           \
                    run_of[last] = (uint16_t)in; /* (found again by its last value) */          \
                    prior[written++] = (uint32_t)last; /* (read already: noted to clear) */    \
                }                                                                               \
                in = run_of[before];                                                            \
                if (!in) { /* the key's second value: a run */                                  \
                    runs[r] = (Run){.key = key[k], .size = 1, .first = before};                 \
                    in = (int32_t)++r;                                                          \
                }                                                                               \
                run = runs + in - 1;                                                            \
                size = run->size;                                                               \
            }                                                                                   \
            size++;                                                                             \
            run->last = k;                                                                      \
            next[before] = k;                                                                   \
            last = k;                                                                           \
        }                                                                                       \
        if (run) {                                                                              \
            run->size = size;                                                                   \
        }                                                                                       \
        for (size_t j = 0; j < written; j++) {                                                  \
            run_of[prior[j]] = 0;                                                               \
        }                                                                                       \
        return r;                                                                               \
    }

SMALL_RUNS(int8_t)
SMALL_RUNS(uint8_t)
SMALL_RUNS(int16_t)
SMALL_RUNS(uint16_t)

/* The runs of a point's keys (`key`, `count` of them) wider than 16 bits, unordered, into x->runs: their
 * count. Each key is hashed (Fibonacci) into a table at most half full; a key's second value makes it a
 * run. */
#define POINT_RUNS(T)                                                                           \
    static Py_ssize_t runs_##T(Ties *x, const T *key, int32_t count, int shift, uint64_t mask) { \
        int32_t *slot = x->slot, *next = x->next;                                               \
        Run *runs = x->runs;                                                                    \
        Py_ssize_t r = 0;                                                                       \
        for (int32_t k = 0; k < count; k++) {                                                   \
            const int64_t v = key[k];                                                           \
            uint64_t h = ((uint64_t)v * 0x9E3779B97F4A7C15ULL) >> shift;                        \
            for (;; h = (h + 1) & mask) {                                                       \
                const int32_t e = slot[h];                                                      \
                if (e == -1) { /* a key not seen before */                                      \
                    slot[h] = k;                                                                \
                    break;                                                                      \
                }                                                                               \
                if (e >= 0) {                                                                   \
                    if (key[e] == v) { /* its second value: a run */                            \
                        runs[r] = (Run){.key = v, .size = 2, .first = e, .last = k};            \
                        next[e] = k;                                                            \
                        slot[h] = (int32_t)(-2 - r++);                                          \
                        break;                                                                  \
                    }                                                                           \
                } else if (runs[-2 - e].key == v) {                                             \
                    Run *run = runs + (-2 - e);                                                 \
                    next[run->last] = k;                                                        \
                    run->last = k;                                                              \
                    run->size++;                                                                \
                    break;                                                                      \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        return r;                                                                               \
    }

POINT_RUNS(int8_t)
POINT_RUNS(uint8_t)
POINT_RUNS(int16_t)
POINT_RUNS(uint16_t)
POINT_RUNS(int32_t)
POINT_RUNS(uint32_t)
POINT_RUNS(int64_t)

static int by_key_descending(const void *a, const void *b) {
    int64_t ka = ((const Run *)a)->key, kb = ((const Run *)b)->key;
    return (ka < kb) - (ka > kb);
}

/* The runs of the point of `count` values from `from` into x->runs, by key descending in x->order: their
 * count. */
static Py_ssize_t point_runs(Ties *x, Py_ssize_t from, Py_ssize_t count) {
    if (count < 2) {
        return 0;
    }
    const char *buf = (const char *)x->keys.view.buf + from * x->keys.view.itemsize;
    Py_ssize_t r;
    if (x->small) {
        switch (x->keys.kind) {
            case I8: r = small_runs_int8_t(x, (const int8_t *)buf, (int32_t)count); break;
            case U8: r = small_runs_uint8_t(x, (const uint8_t *)buf, (int32_t)count); break;
            case I16: r = small_runs_int16_t(x, (const int16_t *)buf, (int32_t)count); break;
            default: r = small_runs_uint16_t(x, (const uint16_t *)buf, (int32_t)count); break;
        }
    } else {
        Py_ssize_t slots = table_size(count);
        int shift = 64;
        for (Py_ssize_t s = slots; s > 1; s >>= 1) {
            shift--;
        }
        uint64_t mask = (uint64_t)slots - 1;
        memset(x->slot, 0xFF, sizeof(int32_t) * (size_t)slots);
        switch (x->keys.kind) {
            case I8: r = runs_int8_t(x, (const int8_t *)buf, (int32_t)count, shift, mask); break;
            case U8: r = runs_uint8_t(x, (const uint8_t *)buf, (int32_t)count, shift, mask); break;
            case I16: r = runs_int16_t(x, (const int16_t *)buf, (int32_t)count, shift, mask); break;
            case U16: r = runs_uint16_t(x, (const uint16_t *)buf, (int32_t)count, shift, mask); break;
            case I32: r = runs_int32_t(x, (const int32_t *)buf, (int32_t)count, shift, mask); break;
            case U32: r = runs_uint32_t(x, (const uint32_t *)buf, (int32_t)count, shift, mask); break;
            default: r = runs_int64_t(x, (const int64_t *)buf, (int32_t)count, shift, mask); break;
        }
    }
    int32_t *order = x->order;
    if (x->small && r <= 16) { /* each run to its rank: the count of larger keys, over 16 (past `r`: 0, never
                                * larger; the keys less the least, under 2^16) without a branch */
        int32_t key[16] = {0};
        for (Py_ssize_t i = 0; i < r; i++) {
            key[i] = (int32_t)(x->runs[i].key - x->lo);
        }
        for (Py_ssize_t i = 0; i < r; i++) {
            int32_t rank = 0;
            for (int j = 0; j < 16; j++) {
                rank += key[j] > key[i];
            }
            order[rank] = (int32_t)i;
        }
        return r;
    }
    if (r > 16) {
        qsort(x->runs, (size_t)r, sizeof(Run), by_key_descending);
    } else {
        for (Py_ssize_t i = 1; i < r; i++) {
            Run run = x->runs[i];
            Py_ssize_t j = i;
            for (; j > 0 && x->runs[j - 1].key < run.key; j--) {
                x->runs[j] = x->runs[j - 1];
            }
            x->runs[j] = run;
        }
    }
    for (Py_ssize_t i = 0; i < r; i++) {
        order[i] = (int32_t)i;
    }
    return r;
}

/* A run's values (export order) into `m`, at most 4. */
static inline void run_values(const Ties *x, const Run *run, int32_t *m) {
    int32_t k = run->first;
    for (int i = 0; i < run->size; i++, k = x->next[k]) {
        m[i] = k;
    }
}

/* A run of 2 to 4 (`m`: its values, export order; `id`: the point's ids) put in id order; -1 where two have
 * one id. */
#define BY_ID(T)                                                                     \
    static inline int by_id_##T(const T *id, int32_t *m, int len) {                  \
        int ascending = 1;                                                           \
        for (int i = 1; i < len; i++) {                                              \
            ascending &= id[m[i]] > id[m[i - 1]];                                    \
        }                                                                            \
        if (ascending) { /* (export order is id order: the usual case) */            \
            return 0;                                                                \
        }                                                                            \
        for (int i = 1; i < len; i++) {                                              \
            const int32_t v = m[i];                                                  \
            int j = i;                                                               \
            for (; j > 0 && id[m[j - 1]] > id[v]; j--) {                             \
                m[j] = m[j - 1];                                                     \
            }                                                                        \
            if (j > 0 && id[m[j - 1]] == id[v]) {                                    \
                return -1;                                                           \
            }                                                                        \
            m[j] = v;                                                                \
        }                                                                            \
        return 0;                                                                    \
    }

/* The stored fields of a point's runs (x->runs, `runs` of them; `whole`: the point is kept whole), from the
 * point's fields (`ties`, packed, its first value's at 0) and ids (`id`), appended to `t`: -1 where a run of
 * 2 to 4 has one id twice. */
typedef struct {
    uint8_t *kept, byte; /* the stored fields packed, the last byte so far in `byte` (written, never read) */
    Py_ssize_t stored, in_runs;
    int fits;
} Tied;

#define POINT_TIED(T)                                                                                     \
    BY_ID(T)                                                                                              \
    static int point_tied_##T(const Ties *x, Py_ssize_t runs, int whole, const uint8_t *ties,             \
                              Py_ssize_t from, const T *id, Tied *t) {                                   \
        const int32_t *next = x->next;                                                                    \
        Py_ssize_t stored = t->stored, in_runs = t->in_runs;                                              \
        int fits = t->fits;                                                                               \
        uint8_t byte = t->byte, *kept = t->kept;                                                          \
        for (Py_ssize_t r = 0; r < runs; r++) {                                                           \
            const Run *run = x->runs + x->order[r];                                                       \
            const int len = run->size;                                                                    \
            if (len > 4 || whole) { /* no field stored: each must be 0 */                                 \
                int32_t k = run->first;                                                                   \
                for (int i = 0; i < len; i++, k = next[k]) {                                              \
                    const int f = field_at(ties, from + k);                                               \
                    in_runs += f != 0;                                                                    \
                    fits &= f == 0;                                                                       \
                }                                                                                         \
                continue;                                                                                 \
            }                                                                                             \
            if (len == 2) { /* (most runs) the stored field the one of the lesser id, the other its rest */ \
                const int32_t a = run->first, b = run->last;                                              \
                if (id[a] == id[b]) {                                                                     \
                    return -1;                                                                            \
                }                                                                                         \
                const int fa = field_at(ties, from + a), fb = field_at(ties, from + b);                   \
                const int swap = id[a] > id[b], f = swap ? fb : fa, rest = swap ? fa : fb;                \
                in_runs += (fa != 0) + (fb != 0);                                                         \
                const int shift = (int)(stored & 3) << 1;                                                 \
                byte = (uint8_t)((shift ? byte : 0) | f << shift);                                        \
                kept[stored >> 2] = byte;                                                                 \
                stored++;                                                                                 \
                fits &= ((4 - f) & 3) == rest;                                                            \
                continue;                                                                                 \
            }                                                                                             \
            int32_t m[4];                                                                                 \
            m[0] = run->first;                                                                            \
            for (int i = 1; i < len; i++) {                                                               \
                m[i] = next[m[i - 1]];                                                                    \
            }                                                                                             \
            if (by_id_##T(id, m, len) < 0) {                                                              \
                return -1;                                                                                \
            }                                                                                             \
            int left = 0; /* the run's places less the positions its stored fields give, mod 4 */         \
            for (int i = 0; i < len - 1; i++) {                                                           \
                const int f = field_at(ties, from + m[i]);                                                \
                in_runs += f != 0;                                                                        \
                left += i - ((i + f) & 3);                                                                \
                const int shift = (int)(stored & 3) << 1;                                                 \
                byte = (uint8_t)((shift ? byte : 0) | f << shift);                                        \
                kept[stored >> 2] = byte;                                                                 \
                stored++;                                                                                 \
            }                                                                                             \
            const int f = field_at(ties, from + m[len - 1]);                                              \
            in_runs += f != 0;                                                                            \
            fits &= (left & 3) == f;                                                                      \
        }                                                                                                 \
        t->stored = stored;                                                                               \
        t->in_runs = in_runs;                                                                             \
        t->fits = fits;                                                                                   \
        t->byte = byte;                                                                                   \
        return 0;                                                                                         \
    }

POINT_TIED(int8_t)
POINT_TIED(uint8_t)
POINT_TIED(int16_t)
POINT_TIED(uint16_t)
POINT_TIED(int32_t)
POINT_TIED(uint32_t)
POINT_TIED(int64_t)

/* `by_id` for the ids of the point from `from`, whatever their type. */
static int by_id(const Ties *x, Py_ssize_t from, int32_t *m, int len) {
    const void *ids = x->ids.view.buf;
    switch (x->ids.kind) {
        case I8: return by_id_int8_t((const int8_t *)ids + from, m, len);
        case U8: return by_id_uint8_t((const uint8_t *)ids + from, m, len);
        case I16: return by_id_int16_t((const int16_t *)ids + from, m, len);
        case U16: return by_id_uint16_t((const uint16_t *)ids + from, m, len);
        case I32: return by_id_int32_t((const int32_t *)ids + from, m, len);
        case U32: return by_id_uint32_t((const uint32_t *)ids + from, m, len);
        default: return by_id_int64_t((const int64_t *)ids + from, m, len);
    }
}

/* The count of fields not 0 in each byte of packed tie fields. */
static uint8_t nonzero_fields[256];

static PyObject *tied_of_ties(PyObject *self, PyObject *args) {
    (void)self;
    Ties x;
    PyObject *result = NULL;
    uint8_t *kept = NULL;
    if (ties_open(&x, args) < 0) {
        goto done;
    }
    const uint8_t *ties = x.fields.buf;
    if (x.fields.len < (x.n + 3) / 4) {
        PyErr_Format(PyExc_ValueError, "grid ties: %zd bytes for %zd values", x.fields.len, x.n);
        goto done;
    }
    Py_ssize_t nonzero = 0, i = 0;
    for (; i + 8 <= x.fields.len; i += 8) { /* eight bytes at a time: a bit per field not 0, counted */
        uint64_t w;
        memcpy(&w, ties + i, 8);
        w = (w | w >> 1) & 0x5555555555555555ULL;
        w = (w & 0x3333333333333333ULL) + (w >> 2 & 0x3333333333333333ULL);
        w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        nonzero += (Py_ssize_t)((w * 0x0101010101010101ULL) >> 56);
    }
    for (; i < x.fields.len; i++) {
        nonzero += nonzero_fields[ties[i]];
    }
    kept = PyMem_Calloc((size_t)(x.n / 4 + 1), 1);
    if (!kept) {
        PyErr_NoMemory();
        goto done;
    }
    Tied t = {kept, 0, 0, 0, 1};
    Py_ssize_t from = 0;
    for (Py_ssize_t p = 0; p < x.points; p++) {
        const Py_ssize_t count = (Py_ssize_t)ints_at(&x.lengths, p);
        const Py_ssize_t runs = point_runs(&x, from, count);
        const int whole = x.is_whole[p];
        const void *ids = x.ids.view.buf;
        int ok;
        switch (x.ids.kind) {
#define TIED(T) ok = point_tied_##T(&x, runs, whole, ties, from, (const T *)ids + from, &t)
            case I8: TIED(int8_t); break;
            case U8: TIED(uint8_t); break;
            case I16: TIED(int16_t); break;
            case U16: TIED(uint16_t); break;
            case I32: TIED(int32_t); break;
            case U32: TIED(uint32_t); break;
            default: TIED(int64_t); break;
#undef TIED
        }
        if (ok < 0) {
            result = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        from += count;
    }
    const Py_ssize_t stored = t.stored, in_runs = t.in_runs;
    const int fits = t.fits;
    if (!fits || in_runs != nonzero) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyByteArray_FromStringAndSize((const char *)kept, (stored + 3) / 4);
done:
    PyMem_Free(kept);
    ties_release(&x);
    return result;
}

static PyObject *ties_of_tied(PyObject *self, PyObject *args) {
    (void)self;
    Ties x;
    PyObject *result = NULL;
    if (ties_open(&x, args) < 0) {
        goto done;
    }
    const uint8_t *tied = x.fields.buf;
    Py_ssize_t available = 4 * x.fields.len, stored = 0;
    result = PyByteArray_FromStringAndSize(NULL, (x.n + 3) / 4);
    if (!result) {
        goto done;
    }
    uint8_t *out = (uint8_t *)PyByteArray_AS_STRING(result);
    memset(out, 0, (size_t)((x.n + 3) / 4));
    Py_ssize_t from = 0;
    for (Py_ssize_t p = 0; p < x.points; p++) {
        const Py_ssize_t count = (Py_ssize_t)ints_at(&x.lengths, p);
        const Py_ssize_t runs = x.is_whole[p] ? 0 : point_runs(&x, from, count);
        for (Py_ssize_t r = 0; r < runs; r++) {
            const Run *run = x.runs + x.order[r];
            if (run->size > 4) {
                continue;
            }
            const int len = run->size;
            int32_t m[4];
            int i;
            run_values(&x, run, m);
            if (by_id(&x, from, m, len) < 0) {
                Py_SETREF(result, Py_NewRef(Py_NotImplemented));
                goto done;
            }
            int64_t left = 0;
            for (i = 0; i < len; i++) {
                int f;
                if (i < len - 1) {
                    f = stored < available ? field_at(tied, stored) : 0;
                    stored++;
                    left += i - ((i + f) & 3);
                } else { /* the position the others leave */
                    f = (int)(left & 3);
                }
                Py_ssize_t at = from + m[i];
                out[at >> 2] |= (uint8_t)(f << ((at & 3) << 1));
            }
        }
        from += count;
    }
    if ((stored + 3) / 4 != x.fields.len) {
        PyErr_Format(PyExc_ValueError, "grid ties: %zd bytes for %zd tied values", x.fields.len, stored);
        Py_CLEAR(result);
    }
done:
    ties_release(&x);
    return result;
}

/* The least and largest of each of `names` columns of a points x names table of T, a column at a time (its
 * least and largest in registers), and each value's difference from its column's least into its group:
 * `out[c]` the column's first difference in its group, `stride[c]` its group's row length. */
#define WIDTH_LOOPS(T)                                                                                 \
    static void bounds_##T(const T *code, Py_ssize_t points, Py_ssize_t names, int64_t *floor,        \
                           int64_t *top) {                                                             \
        for (Py_ssize_t c = 0; c < names; c++) {                                                      \
            T least = points ? code[c] : 0, most = least;                                             \
            for (const T *v = code + c + names, *end = code + points * names; v < end; v += names) { \
                least = *v < least ? *v : least;                                                      \
                most = *v > most ? *v : most;                                                         \
            }                                                                                          \
            floor[c] = least;                                                                          \
            top[c] = most;                                                                             \
        }                                                                                              \
    }                                                                                                  \
    static void differences_##T(const T *code, Py_ssize_t points, Py_ssize_t names, const int64_t *floor, \
                                const uint8_t *widths, char *const *out, const Py_ssize_t *stride) {  \
        for (Py_ssize_t c = 0; c < names; c++) {                                                      \
            if (!widths[c]) {                                                                          \
                continue;                                                                              \
            }                                                                                          \
            const T *v = code + c, least = (T)floor[c];                                               \
            const Py_ssize_t step = stride[c];                                                         \
            if (widths[c] > 8) {                                                                       \
                uint16_t *o = (uint16_t *)out[c];                                                      \
                for (Py_ssize_t p = 0; p < points; p++, v += names, o += step) {                     \
                    *o = (uint16_t)(*v - least);                                                       \
                }                                                                                      \
            } else {                                                                                   \
                uint8_t *o = (uint8_t *)out[c];                                                        \
                for (Py_ssize_t p = 0; p < points; p++, v += names, o += step) {                     \
                    *o = (uint8_t)(*v - least);                                                        \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

WIDTH_LOOPS(int16_t)
WIDTH_LOOPS(uint16_t)
WIDTH_LOOPS(int32_t)

static PyObject *width_groups(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *codes_obj;
    Ints codes = {0};
    Py_ssize_t names;
    PyObject *floor_out = NULL, *widths_out = NULL, *groups = NULL, *result = NULL;
    int64_t *floor = NULL, *top = NULL;
    char **out = NULL;
    Py_ssize_t *stride = NULL;
    if (!PyArg_ParseTuple(args, "On", &codes_obj, &names)) {
        return NULL;
    }
    if (ints_open(codes_obj, &codes, "codes") < 0) {
        goto done;
    }
    if (codes.kind != I16 && codes.kind != U16 && codes.kind != I32) {
        PyErr_Format(PyExc_ValueError, "grid values: codes of format '%s': expected int16, uint16 or int32",
                     codes.view.format);
        goto done;
    }
    Py_ssize_t n = codes.n, size = codes.view.itemsize;
    if (names <= 0 || n % names) {
        PyErr_Format(PyExc_ValueError, "grid values: %zd codes for %zd names at every point", n, names);
        goto done;
    }
    Py_ssize_t points = n / names;
    floor_out = PyByteArray_FromStringAndSize(NULL, names * size);
    widths_out = PyByteArray_FromStringAndSize(NULL, names);
    floor = PyMem_Malloc((size_t)names * 2 * sizeof(int64_t));
    out = PyMem_Malloc((size_t)names * sizeof(char *));
    stride = PyMem_Malloc((size_t)names * sizeof(Py_ssize_t));
    groups = PyDict_New();
    if (!floor_out || !widths_out || !floor || !out || !stride || !groups) {
        if (!floor || !out || !stride) {
            PyErr_NoMemory();
        }
        goto done;
    }
    top = floor + names;
    uint8_t *widths = (uint8_t *)PyByteArray_AS_STRING(widths_out);
    switch (codes.kind) {
        case I16: bounds_int16_t(codes.view.buf, points, names, floor, top); break;
        case U16: bounds_uint16_t(codes.view.buf, points, names, floor, top); break;
        default: bounds_int32_t(codes.view.buf, points, names, floor, top); break;
    }
    Py_ssize_t per_width[MAX_WIDTH + 1] = {0};
    for (Py_ssize_t c = 0; c < names; c++) {
        int64_t spread = top[c] - floor[c];
        int w = 0;
        while (w <= MAX_WIDTH && spread >= (1LL << w)) {
            w++;
        }
        if (w > MAX_WIDTH) {
            PyErr_Format(PyExc_ValueError, "grid values: name %zd spans %lld codes, more than 16 bits", c,
                         (long long)spread);
            goto done;
        }
        widths[c] = (uint8_t)w;
        per_width[w]++;
    }
    char *floor_bytes = PyByteArray_AS_STRING(floor_out);
    for (Py_ssize_t c = 0; c < names; c++) { /* the floors in the codes' type */
        if (size == 2) {
            uint16_t v = (uint16_t)floor[c];
            memcpy(floor_bytes + 2 * c, &v, 2);
        } else {
            int32_t v = (int32_t)floor[c];
            memcpy(floor_bytes + 4 * c, &v, 4);
        }
    }
    /* Each group: a row per point of its names' differences, by id; written a column at a time. */
    char *part_of[MAX_WIDTH + 1] = {0};
    for (int w = 1; w <= MAX_WIDTH; w++) {
        if (!per_width[w]) {
            continue;
        }
        PyObject *part = PyByteArray_FromStringAndSize(NULL, points * per_width[w] * (w > 8 ? 2 : 1));
        PyObject *width_key = part ? PyLong_FromLong(w) : NULL;
        int failed = !width_key || PyDict_SetItem(groups, width_key, part) < 0;
        Py_XDECREF(width_key);
        if (part) {
            part_of[w] = PyByteArray_AS_STRING(part);
            Py_DECREF(part); /* (held by `groups`) */
        }
        if (failed) {
            goto done;
        }
    }
    Py_ssize_t rank[MAX_WIDTH + 1] = {0};
    for (Py_ssize_t c = 0; c < names; c++) {
        int w = widths[c];
        stride[c] = per_width[w];
        out[c] = w ? part_of[w] + rank[w]++ * (w > 8 ? 2 : 1) : NULL;
    }
    switch (codes.kind) {
        case I16: differences_int16_t(codes.view.buf, points, names, floor, widths, out, stride); break;
        case U16: differences_uint16_t(codes.view.buf, points, names, floor, widths, out, stride); break;
        default: differences_int32_t(codes.view.buf, points, names, floor, widths, out, stride); break;
    }
    result = PyTuple_Pack(3, floor_out, widths_out, groups);
done:
    Py_XDECREF(floor_out);
    Py_XDECREF(widths_out);
    Py_XDECREF(groups);
    PyMem_Free(floor);
    PyMem_Free(out);
    PyMem_Free(stride);
    ints_release(&codes);
    return result;
}

static PyMethodDef methods[] = {
    {"tied_of_ties", tied_of_ties, METH_VARARGS, "The tie fields version 8 stores (packed), or None."},
    {"ties_of_tied", ties_of_tied, METH_VARARGS, "Every value's tie field (packed) from those stored."},
    {"width_groups", width_groups, METH_VARARGS, "Each name's floor and width, the differences by width."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_grid_pack", "The loops of state version 8's grid packing.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__grid_pack(void) {
    for (int b = 0; b < 256; b++) {
        nonzero_fields[b] = (uint8_t)(((b & 3) != 0) + ((b & 12) != 0) + ((b & 48) != 0) + ((b & 192) != 0));
    }
    return PyModule_Create(&module);
}
