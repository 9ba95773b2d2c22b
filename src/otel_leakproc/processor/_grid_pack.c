/* _grid_pack: the loops of state version 8's grid packing (history.py `presence_and_widths`,
 * `presence_of_ids`, `ids_of_presence`, `values_by_width`, `tied_of_ties`, `ties_of_tied`), whose numpy forms
 * stay the reference and the path of what these do not take.
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
 * Finding the runs. Keys of 16 bits or less (a grid's 16-bit codes; float-coded grids' keys come from `export_keys` and take the hash table) in points of
 * at most 65,535 values have an entry each in a table from the grid's least key to its largest (at most
 * 256 KiB; one pass over the keys finds them): the stamp of the last point that saw the key and the index of
 * its last value there. A point takes the next stamp (nothing is cleared between points; the table once every
 * 32,767 points of two values or more, the points that take a stamp), and one pass without a branch on the keys stamps each key with its value's index, noting
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
 *   grid_values(lengths, ids, codes, names) -> (present, floor, widths, {"width": differences})
 *                                             | NotImplemented
 *       What version 8 writes of an export's ids and codes (history.py `presence_and_widths`), in one call:
 *       the presence bitmap (`presence_of_ids`: a bit per point and name, row by row, top bit first, as
 *       np.packbits; None where larger than the ids or a point's ids do not ascend; lengths None: not
 *       made) and, for integer codes (int16, uint16, int32; None: none, floats: None given back for these
 *       three), per name its least code (in the codes' type) and the bits of its largest difference from it
 *       (uint8, 0 to 16; a name no value has: 0 and 0), and per width present but 0, keyed by the width as a
 *       string (the state's keys), its names' values' differences in export order (uint8 up to 8 bits, else
 *       native uint16). NotImplemented where an array is not one of these (the numpy forms, the references,
 *       take it) or int32 codes of a name span more than 16 bits.
 *       Method. Whether every point names every name (ids 0 .. names - 1, row after row: the usual export)
 *       is one memcmp of the ids with themselves a row later, once the first row is checked. Then the
 *       bitmap is all ones, and the codes are a points x names table: each column's least and largest come
 *       row by row, 32 or 8 columns at a time in SSE2 registers (16-bit codes, the unsigned domain: int16
 *       biased by 0x8000), and each column's differences are written down the column into its group at its
 *       group's row length (its name's rank among its width's). Any other export goes by id: one pass for
 *       the bounds and counts, one to write each value's difference at its group's next place.
 *   presence_ids(lengths, present, names, size) -> bytearray | NotImplemented
 *       The inverse of the bitmap (history.py `ids_of_presence`): each point's ids, ascending, as signed
 *       integers of `size` bytes (1, 2, 4 or 8). ValueError where the bitmap's size or a point's count of
 *       bits is not what `lengths` says. A bitmap of every bit set (checked a byte at a time) is the first
 *       row, 0 .. names - 1, copied; any other is read a bit at a time.
 *
 * lengths, ids, keys and whole (the points kept whole, any order) are C-contiguous arrays of native
 * integers (8 to 64 bits; keys and whole signed or unsigned up to 32 bits, or int64), read as they are: no
 * copies to convert. ties/tied: bytes. An array of another type (grid_values, presence_ids: NotImplemented), counts that
 * do not add up, a whole point out of range and an id out of the names raise ValueError naming what is
 * wrong; nothing is read outside its buffer. Every function holds the GIL throughout.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* -- an export's presence bitmap and its values by width: `grid_values` ----------------------------------- */

/* Opens `obj` as contiguous native integers like `ints_open`, but says 0 (nothing raised) where it is not
 * one: the caller leaves such an export to the numpy forms. */
static int ints_try(PyObject *obj, Ints *x) {
    if (ints_open(obj, x, "an array") < 0) {
        PyErr_Clear();
        ints_release(x);
        return 0;
    }
    return 1;
}

/* Whether the ids are 0, 1, ... names - 1, row after row (every point names every name): the first row
 * checked, then the rest compared with the whole a row earlier (one memcmp, equal only if every row is the
 * first). An id type too narrow for names - 1 fails the first row. */
static int every_name(const Ints *ids, Py_ssize_t names) {
    const Py_ssize_t n = ids->n;
    if (names <= 0 || n == 0 || n % names) {
        return 0;
    }
    for (Py_ssize_t c = 0; c < names; c++) {
        if (ints_at(ids, c) != c) {
            return 0;
        }
    }
    const char *buf = ids->view.buf;
    const size_t row = (size_t)names * (size_t)ids->view.itemsize;
    return memcmp(buf + row, buf, (size_t)ids->view.len - row) == 0;
}

/* `presence_of_ids`: a bit per point and name, row by row, the first of a byte its top bit (np.packbits);
 * None where the bitmap is larger than the ids as bytes (or there are none) or a point's ids do not
 * ascend. ValueError for an id out of the names (in ascending ids). The lengths add up to the ids. */
static PyObject *presence(const Ints *lengths, const Ints *ids, Py_ssize_t names, int every) {
    const Py_ssize_t points = lengths->n, n = ids->n;
    if (!n || (points && names > PY_SSIZE_T_MAX / 8 / points) || points * names > 8 * n) {
        Py_RETURN_NONE;
    }
    const Py_ssize_t bits = points * names, size = (bits + 7) / 8;
    PyObject *out = PyByteArray_FromStringAndSize(NULL, size);
    if (!out) {
        return NULL;
    }
    uint8_t *map = (uint8_t *)PyByteArray_AS_STRING(out);
    if (every && n == bits) { /* every bit set (the usual export) */
        memset(map, 0xFF, (size_t)size);
        if (bits & 7) {
            map[size - 1] = (uint8_t)(0xFF00 >> (bits & 7));
        }
        return out;
    }
    memset(map, 0, (size_t)size);
    int ascending = 1, named = 1;
    Py_ssize_t from = 0;
    for (Py_ssize_t p = 0; p < points; p++) {
        const Py_ssize_t count = (Py_ssize_t)ints_at(lengths, p);
        int64_t before = 0;
        for (Py_ssize_t k = 0; k < count; k++) {
            const int64_t id = ints_at(ids, from + k);
            ascending &= !k || id > before;
            before = id;
            if (id < 0 || id >= names) {
                named = 0;
                continue;
            }
            const Py_ssize_t bit = p * names + (Py_ssize_t)id;
            map[bit >> 3] |= (uint8_t)(0x80 >> (bit & 7));
        }
        from += count;
    }
    if (!ascending) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    if (!named) {
        Py_DECREF(out);
        PyErr_Format(PyExc_ValueError, "grid presence: an id out of the %zd names", names);
        return NULL;
    }
    return out;
}

/* The least and largest of each column of a points x names table of 16-bit codes, in the unsigned domain
 * (`bias` 0x8000 for int16 codes: x ^ 0x8000 orders them as their values do, and leaves differences as they
 * are mod 2**16), into `floor` and `top` as such. With SSE2 (every x86-64): 32 columns, then 8, at a time,
 * row by row, their bounds in vector registers (an unsigned min is a - (a -sat b), a max b + (a -sat b));
 * what is left, and every column without SSE2, a column at a time. */
static void table_bounds16(const uint16_t *code, Py_ssize_t rows, Py_ssize_t names, uint16_t bias,
                           uint16_t *floor, uint16_t *top) {
    Py_ssize_t c = 0;
#if defined(__SSE2__)
    const __m128i b = _mm_set1_epi16((short)bias);
#define LOAD(at) _mm_xor_si128(_mm_loadu_si128((const __m128i *)(at)), b)
#define BOUND(k)                                                   \
    do {                                                           \
        const __m128i x = LOAD(v + 8 * (k));                       \
        lo##k = _mm_sub_epi16(lo##k, _mm_subs_epu16(lo##k, x));    \
        hi##k = _mm_add_epi16(hi##k, _mm_subs_epu16(x, hi##k));    \
    } while (0)
    for (; c + 32 <= names; c += 32) {
        __m128i lo0 = LOAD(code + c), lo1 = LOAD(code + c + 8), lo2 = LOAD(code + c + 16), lo3 = LOAD(code + c + 24);
        __m128i hi0 = lo0, hi1 = lo1, hi2 = lo2, hi3 = lo3;
        for (Py_ssize_t p = 1; p < rows; p++) {
            const uint16_t *v = code + p * names + c;
            BOUND(0);
            BOUND(1);
            BOUND(2);
            BOUND(3);
        }
        _mm_storeu_si128((__m128i *)(floor + c), lo0);
        _mm_storeu_si128((__m128i *)(floor + c + 8), lo1);
        _mm_storeu_si128((__m128i *)(floor + c + 16), lo2);
        _mm_storeu_si128((__m128i *)(floor + c + 24), lo3);
        _mm_storeu_si128((__m128i *)(top + c), hi0);
        _mm_storeu_si128((__m128i *)(top + c + 8), hi1);
        _mm_storeu_si128((__m128i *)(top + c + 16), hi2);
        _mm_storeu_si128((__m128i *)(top + c + 24), hi3);
    }
    for (; c + 8 <= names; c += 8) {
        __m128i lo0 = LOAD(code + c), hi0 = lo0;
        for (Py_ssize_t p = 1; p < rows; p++) {
            const uint16_t *v = code + p * names + c;
            BOUND(0);
        }
        _mm_storeu_si128((__m128i *)(floor + c), lo0);
        _mm_storeu_si128((__m128i *)(top + c), hi0);
    }
#undef BOUND
#undef LOAD
#endif
    for (; c < names; c++) {
        uint16_t lo = code[c] ^ bias, hi = lo;
        for (Py_ssize_t p = 1; p < rows; p++) {
            const uint16_t x = code[p * names + c] ^ bias;
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
        floor[c] = lo;
        top[c] = hi;
    }
}

/* Each value of a points x names table of T (every name at every point) less its column's least, into its
 * group: a column at a time, four rows a step; `out[c]` the column's first difference in its group,
 * `stride[c]` its group's row length (the count of names of its width). */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline)) /* (a loop of its own registers, not spilled in its caller's) */
#else
#define NOINLINE
#endif

#define TABLE_LOOPS(T)                                                                                  \
    NOINLINE static void table_differences_##T(const T *code, Py_ssize_t rows, Py_ssize_t names,               \
                                      const int64_t *floor, const uint8_t *widths, char *const *out,    \
                                      const Py_ssize_t *stride) {                                       \
        for (Py_ssize_t c = 0; c < names; c++) {                                                        \
            if (!widths[c]) {                                                                           \
                continue;                                                                               \
            }                                                                                           \
            const T *v = code + c, least = (T)floor[c];                                                 \
            const Py_ssize_t s = stride[c], s2 = 2 * s, s3 = 3 * s, n2 = 2 * names, n3 = 3 * names;     \
            Py_ssize_t p = 0;                                                                           \
            if (widths[c] > 8) {                                                                        \
                uint16_t *o = (uint16_t *)out[c];                                                       \
                for (; p + 4 <= rows; p += 4, v += 4 * names, o += 4 * s) {                             \
                    o[0] = (uint16_t)(v[0] - least);                                                    \
                    o[s] = (uint16_t)(v[names] - least);                                                \
                    o[s2] = (uint16_t)(v[n2] - least);                                                  \
                    o[s3] = (uint16_t)(v[n3] - least);                                                  \
                }                                                                                       \
                for (; p < rows; p++, v += names, o += s) {                                             \
                    *o = (uint16_t)(*v - least);                                                        \
                }                                                                                       \
            } else {                                                                                    \
                uint8_t *o = (uint8_t *)out[c];                                                         \
                for (; p + 4 <= rows; p += 4, v += 4 * names, o += 4 * s) {                             \
                    o[0] = (uint8_t)(v[0] - least);                                                     \
                    o[s] = (uint8_t)(v[names] - least);                                                 \
                    o[s2] = (uint8_t)(v[n2] - least);                                                   \
                    o[s3] = (uint8_t)(v[n3] - least);                                                   \
                }                                                                                       \
                for (; p < rows; p++, v += names, o += s) {                                             \
                    *o = (uint8_t)(*v - least);                                                         \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }

TABLE_LOOPS(int16_t)
TABLE_LOOPS(uint16_t)
TABLE_LOOPS(int32_t)

/* The state's keys of the groups: "1" to "16". */
static PyObject *width_keys[MAX_WIDTH + 1];

static PyObject *grid_values(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *lengths_obj, *ids_obj, *codes_obj;
    Py_ssize_t names;
    Ints lengths = {0}, ids = {0}, codes = {0};
    Py_buffer floats = {0};
    PyObject *present = NULL, *floor_out = NULL, *widths_out = NULL, *groups = NULL, *result = NULL;
    int64_t *floor = NULL;
    Py_ssize_t *count = NULL, *stride = NULL;
    char **out = NULL;
    uint16_t *bounds16 = NULL; /* 16-bit codes' column bounds, unsigned (`table_bounds16`) */
    if (!PyArg_ParseTuple(args, "OOOn", &lengths_obj, &ids_obj, &codes_obj, &names)) {
        return NULL;
    }
    if (!width_keys[MAX_WIDTH]) { /* made in order: the last one set means all are (a failure leaves it NULL) */
        for (int w = 1; w <= MAX_WIDTH; w++) {
            if (width_keys[w]) {
                continue;
            }
            char key[4];
            snprintf(key, sizeof(key), "%d", w);
            if (!(width_keys[w] = PyUnicode_InternFromString(key))) {
                return NULL;
            }
        }
    }
    const int located = lengths_obj != Py_None; /* lengths: the presence too */
    int coded = codes_obj != Py_None;          /* integer codes: packed by width; float codes: not */
    if ((located && !ints_try(lengths_obj, &lengths)) || !ints_try(ids_obj, &ids)) {
        result = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    if (!coded) {
        codes.n = ids.n;
    } else if (!ints_try(codes_obj, &codes)) {
        if (PyObject_GetBuffer(codes_obj, &floats, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            result = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        const char *f = floats.format ? floats.format : "B";
        f += *f == '@' || *f == '=';
        if (!(f[0] == 'e' || f[0] == 'f' || f[0] == 'd') || f[1]) {
            result = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        coded = 0;
        codes.n = floats.len / floats.itemsize;
    } else if (codes.kind != I16 && codes.kind != U16 && codes.kind != I32) {
        result = Py_NewRef(Py_NotImplemented); /* (codes of 8 or 64 bits: the numpy form's) */
        goto done;
    }
    const Py_ssize_t n = ids.n, points = lengths.n;
    if (names < 0 || codes.n != n) {
        PyErr_Format(PyExc_ValueError, "grid values: %zd codes for %zd ids of %zd names", codes.n, n, names);
        goto done;
    }
    Py_ssize_t total = located ? 0 : n;
    for (Py_ssize_t p = 0; p < points; p++) {
        const int64_t c = ints_at(&lengths, p);
        if (c < 0 || c > n - total) {
            PyErr_Format(PyExc_ValueError, "grid values: point %zd has %lld values, past the %zd ids", p,
                         (long long)c, n);
            goto done;
        }
        total += (Py_ssize_t)c;
    }
    if (total != n) {
        PyErr_Format(PyExc_ValueError, "grid values: lengths add up to %zd, not the %zd ids", total, n);
        goto done;
    }
    const int every = every_name(&ids, names);
    if (!(present = located ? presence(&lengths, &ids, names, every) : Py_NewRef(Py_None))) {
        goto done;
    }
    if (!coded) {
        result = PyTuple_Pack(4, present, Py_None, Py_None, Py_None);
        goto done;
    }
    const Py_ssize_t size = codes.view.itemsize;
    floor_out = PyByteArray_FromStringAndSize(NULL, names * size);
    widths_out = PyByteArray_FromStringAndSize(NULL, names);
    groups = PyDict_New();
    floor = PyMem_Malloc(sizeof(int64_t) * 2 * ((size_t)names + 1));
    count = PyMem_Calloc((size_t)names + 1, sizeof(Py_ssize_t));
    stride = PyMem_Malloc(sizeof(Py_ssize_t) * ((size_t)names + 1));
    out = PyMem_Malloc(sizeof(char *) * ((size_t)names + 1));
    bounds16 = PyMem_Malloc(sizeof(uint16_t) * 2 * ((size_t)names + 1));
    if (!floor_out || !widths_out || !groups || !floor || !count || !stride || !out || !bounds16) {
        if (!PyErr_Occurred()) {
            PyErr_NoMemory();
        }
        goto done;
    }
    int64_t *top = floor + names + 1;
    const Py_ssize_t rows = every ? n / names : 0;
    if (every) { /* a points x names table */
        if (size == 2) {
            const uint16_t bias = codes.kind == I16 ? 0x8000 : 0;
            uint16_t *lo = bounds16, *hi = lo + names;
            table_bounds16(codes.view.buf, rows, names, bias, lo, hi);
            for (Py_ssize_t c = 0; c < names; c++) {
                floor[c] = bias ? (int64_t)(int16_t)(lo[c] ^ bias) : lo[c];
                top[c] = floor[c] + (hi[c] - lo[c]);
            }
        } else {
            const int32_t *code = codes.view.buf;
            for (Py_ssize_t c = 0; c < names; c++) {
                int32_t lo = code[c], hi = lo;
                for (Py_ssize_t p = 1; p < rows; p++) {
                    const int32_t x = code[p * names + c];
                    lo = x < lo ? x : lo;
                    hi = x > hi ? x : hi;
                }
                floor[c] = lo;
                top[c] = hi;
            }
        }
        for (Py_ssize_t c = 0; c < names; c++) {
            count[c] = rows;
        }
    } else { /* by id: a name no value has is floor 0, width 0 */
        for (Py_ssize_t c = 0; c < names; c++) {
            floor[c] = top[c] = 0;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            const int64_t id = ints_at(&ids, i), v = ints_at(&codes, i);
            if (id < 0 || id >= names) {
                PyErr_Format(PyExc_ValueError, "grid values: id %lld out of the %zd names", (long long)id, names);
                goto done;
            }
            if (!count[id]++) {
                floor[id] = top[id] = v;
            } else {
                floor[id] = v < floor[id] ? v : floor[id];
                top[id] = v > top[id] ? v : top[id];
            }
        }
    }
    uint8_t *widths = (uint8_t *)PyByteArray_AS_STRING(widths_out);
    Py_ssize_t names_of[MAX_WIDTH + 1] = {0}, values_of[MAX_WIDTH + 1] = {0};
    for (Py_ssize_t c = 0; c < names; c++) {
        const uint64_t spread = (uint64_t)(top[c] - floor[c]);
        int w = 0;
        while (w <= MAX_WIDTH && spread >> w) {
            w++;
        }
        if (w > MAX_WIDTH) { /* (int32 codes only: the numpy form's business) */
            result = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        widths[c] = (uint8_t)w;
        names_of[w]++;
        values_of[w] += count[c];
    }
    char *floor_bytes = PyByteArray_AS_STRING(floor_out);
    for (Py_ssize_t c = 0; c < names; c++) { /* the floors in the codes' type */
        if (size == 2) {
            const uint16_t v = (uint16_t)floor[c];
            memcpy(floor_bytes + 2 * c, &v, 2);
        } else {
            const int32_t v = (int32_t)floor[c];
            memcpy(floor_bytes + 4 * c, &v, 4);
        }
    }
    char *part_of[MAX_WIDTH + 1] = {0};
    for (int w = 1; w <= MAX_WIDTH; w++) {
        if (!values_of[w]) {
            continue;
        }
        PyObject *part = PyByteArray_FromStringAndSize(NULL, values_of[w] * (w > 8 ? 2 : 1));
        const int failed = !part || PyDict_SetItem(groups, width_keys[w], part) < 0;
        if (part) {
            part_of[w] = PyByteArray_AS_STRING(part);
            Py_DECREF(part); /* (held by `groups`) */
        }
        if (failed) {
            goto done;
        }
    }
    if (every) { /* each group a row per point of its names' differences, by id */
        Py_ssize_t rank[MAX_WIDTH + 1] = {0};
        for (Py_ssize_t c = 0; c < names; c++) {
            const int w = widths[c];
            stride[c] = names_of[w];
            out[c] = w ? part_of[w] + rank[w]++ * (w > 8 ? 2 : 1) : NULL;
        }
        switch (codes.kind) {
            case I16: table_differences_int16_t(codes.view.buf, rows, names, floor, widths, out, stride); break;
            case U16: table_differences_uint16_t(codes.view.buf, rows, names, floor, widths, out, stride); break;
            default: table_differences_int32_t(codes.view.buf, rows, names, floor, widths, out, stride); break;
        }
    } else { /* each group its values' differences in export order */
        Py_ssize_t at[MAX_WIDTH + 1] = {0};
        for (Py_ssize_t i = 0; i < n; i++) {
            const int64_t id = ints_at(&ids, i);
            const int w = widths[id];
            if (w > 8) {
                ((uint16_t *)part_of[w])[at[w]++] = (uint16_t)(ints_at(&codes, i) - floor[id]);
            } else if (w) {
                ((uint8_t *)part_of[w])[at[w]++] = (uint8_t)(ints_at(&codes, i) - floor[id]);
            }
        }
    }
    result = PyTuple_Pack(4, present, floor_out, widths_out, groups);
done:
    Py_XDECREF(present);
    Py_XDECREF(floor_out);
    Py_XDECREF(widths_out);
    Py_XDECREF(groups);
    PyMem_Free(floor);
    PyMem_Free(count);
    PyMem_Free(stride);
    PyMem_Free(out);
    PyMem_Free(bounds16);
    ints_release(&lengths);
    ints_release(&ids);
    ints_release(&codes);
    if (floats.obj) {
        PyBuffer_Release(&floats);
    }
    return result;
}

/* -- the ids of a presence bitmap: `presence_ids` ------------------------------------------------------- */

/* An id into a signed integer of `size` bytes at `out[at]`. */
static inline void put_id(char *out, Py_ssize_t at, int size, Py_ssize_t id) {
    switch (size) {
        case 1: ((int8_t *)out)[at] = (int8_t)id; break;
        case 2: ((int16_t *)out)[at] = (int16_t)id; break;
        case 4: ((int32_t *)out)[at] = (int32_t)id; break;
        default: ((int64_t *)out)[at] = (int64_t)id; break;
    }
}

static PyObject *presence_ids(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *lengths_obj, *packed_obj, *result = NULL;
    Py_ssize_t names;
    int size;
    Ints lengths = {0};
    Py_buffer packed = {0};
    if (!PyArg_ParseTuple(args, "OOni", &lengths_obj, &packed_obj, &names, &size)) {
        return NULL;
    }
    if (!ints_try(lengths_obj, &lengths)) {
        return Py_NewRef(Py_NotImplemented);
    }
    if (PyObject_GetBuffer(packed_obj, &packed, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        result = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    const Py_ssize_t points = lengths.n;
    if (!(size == 1 || size == 2 || size == 4 || size == 8) || names < 0 ||
        (size < 8 && names > ((Py_ssize_t)1 << (8 * size - 1)))) {
        PyErr_Format(PyExc_ValueError, "grid presence: ids of %d bytes for %zd names", size, names);
        goto done;
    }
    if ((points && names > PY_SSIZE_T_MAX / 8 / points) || packed.len != (points * names + 7) / 8) {
        PyErr_Format(PyExc_ValueError, "grid presence: %zd bytes for %zd points of %zd names", packed.len, points,
                     names);
        goto done;
    }
    Py_ssize_t total = 0;
    int full = 1; /* every point of every name (the usual bitmap): each row 0 .. names - 1 */
    for (Py_ssize_t p = 0; p < points; p++) {
        const int64_t count = ints_at(&lengths, p);
        if (count < 0 || count > names) {
            PyErr_SetString(PyExc_ValueError, "grid presence: bits and lengths differ");
            goto done;
        }
        total += (Py_ssize_t)count;
        full &= count == names;
    }
    result = PyByteArray_FromStringAndSize(NULL, total * size);
    if (!result) {
        goto done;
    }
    char *out = PyByteArray_AS_STRING(result);
    const uint8_t *map = packed.buf;
    const Py_ssize_t bits = points * names;
    if (full) {
        for (Py_ssize_t i = 0; i < bits / 8; i++) {
            full &= map[i] == 0xFF;
        }
        if (bits & 7) {
            const uint8_t top = (uint8_t)(0xFF00 >> (bits & 7));
            full &= (map[bits / 8] & top) == top;
        }
    }
    if (full && points) { /* the first row, then copies of it */
        for (Py_ssize_t c = 0; c < names; c++) {
            put_id(out, c, size, c);
        }
        const size_t row = (size_t)names * (size_t)size;
        for (Py_ssize_t p = 1; p < points; p++) {
            memcpy(out + p * row, out, row);
        }
        goto done;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t p = 0; p < points; p++) {
        Py_ssize_t found = 0;
        for (Py_ssize_t c = 0, bit = p * names; c < names; c++, bit++) {
            if (map[bit >> 3] & (0x80 >> (bit & 7))) {
                if (at < total) {
                    put_id(out, at, size, c);
                }
                at++;
                found++;
            }
        }
        if (found != ints_at(&lengths, p)) {
            PyErr_SetString(PyExc_ValueError, "grid presence: bits and lengths differ");
            Py_CLEAR(result);
            goto done;
        }
    }
done:
    ints_release(&lengths);
    if (packed.obj) {
        PyBuffer_Release(&packed);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"tied_of_ties", tied_of_ties, METH_VARARGS, "The tie fields version 8 stores (packed), or None."},
    {"ties_of_tied", ties_of_tied, METH_VARARGS, "Every value's tie field (packed) from those stored."},
    {"grid_values", grid_values, METH_VARARGS, "An export's presence bitmap, floors, widths and differences by width."},
    {"presence_ids", presence_ids, METH_VARARGS, "The ids of a presence bitmap, point by point."},
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
