/* _grid_pack: the loops of state version 8's grid packing (history.py `values_by_width`, `tied_of_ties`,
 * `ties_of_tied`), whose numpy forms stay the reference and the path of what these do not take.
 *
 * A grid export lists each point's values by id. Version 8 writes their 16-bit codes as each name's floor
 * and the differences from it grouped by width, and of the 2-bit tie fields (packed four to a byte, low
 * bits first, by export index) only those of the values in runs: a run is two or more values of one point
 * with one key, which the value order (key descending, then id) cannot tell apart. Stored are the fields
 * of runs of 2 to 4 in points not kept whole, in value order, all but each run's last (its position is the
 * one the others leave); every other field is 0. Each numpy form is a dozen passes over the whole export
 * through temporaries; here each is one pass per point. The sort of each point stays numpy's (vectorised,
 * faster than one written here): `value_table` lays the keys out for it.
 *
 *   value_table(lengths, ids, keys) -> (bytearray, width) | None
 *       A table of a row per point, `width` the most values of a point: each value as
 *       (2**31 - 1 - key) << 32 | its place in the point, then INT64_MAX. Sorted row by row it is each
 *       point's value order. None when a key is outside [0, 2**31) or a point's ids are not ascending
 *       (then a place is not the id order).
 *   tied_of_ties(lengths, table, width, ties, whole) -> bytearray | None
 *       The stored fields, packed, from the fields by export index (`ties`), read in the sorted table's
 *       order; None where the fields are not what `ties_of_tied` gives back.
 *   ties_of_tied(lengths, table, width, tied, whole) -> bytearray
 *       The inverse: every value's field, packed by export index. ValueError when `tied` is not as long
 *       as the count of stored fields needs.
 *   width_groups(codes, names) -> (floor, widths, {width: differences})
 *       For codes (int32) of every name at every point (a points x names table, by id): per name its least
 *       code (int32) and the bits of its largest difference from it (uint8, 0 to 16); per width present
 *       but 0 the differences of its names' values, point by point and by id (uint8 up to 8 bits, else
 *       native uint16).
 *
 * lengths, ids, keys, table: native int64 buffers; ties/tied: bytes; whole: a byte per point, nonzero for a
 * point kept whole. Counts that do not add up, a table row that is not its point's places and a difference
 * wider than 16 bits raise ValueError; nothing is read outside its buffer.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PLACE_MASK 0xFFFFFFFFLL
#define KEY_LIMIT (1LL << 31)
#define MAX_WIDTH 16

static inline int field_at(const uint8_t *packed, Py_ssize_t i) {
    return (packed[i >> 2] >> ((i & 3) << 1)) & 3;
}

/* The count of values `lengths` (int64, one per point) adds up to, or -1 with ValueError set. */
static Py_ssize_t total_of(const Py_buffer *lengths, Py_ssize_t limit, Py_ssize_t *widest) {
    if (lengths->len % 8) {
        PyErr_SetString(PyExc_ValueError, "grid pack: lengths must be an int64 buffer");
        return -1;
    }
    const int64_t *len = lengths->buf;
    Py_ssize_t total = 0, most = 0;
    for (Py_ssize_t p = 0; p < lengths->len / 8; p++) {
        if (len[p] < 0 || len[p] > limit - total) {
            PyErr_Format(PyExc_ValueError, "grid pack: point %zd has %lld values, past the %zd values", p,
                         (long long)len[p], limit);
            return -1;
        }
        total += (Py_ssize_t)len[p];
        most = len[p] > most ? (Py_ssize_t)len[p] : most;
    }
    *widest = most;
    return total;
}

static PyObject *value_table(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer lengths, ids, keys;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*", &lengths, &ids, &keys)) {
        return NULL;
    }
    Py_ssize_t n = keys.len / 8, width = 0;
    if (ids.len % 8 || keys.len % 8 || ids.len != keys.len) {
        PyErr_Format(PyExc_ValueError, "grid pack: %zd bytes of ids for %zd bytes of keys (int64 each)", ids.len,
                     keys.len);
        goto done;
    }
    Py_ssize_t total = total_of(&lengths, n, &width);
    if (total < 0) {
        goto done;
    }
    if (total != n) {
        PyErr_Format(PyExc_ValueError, "grid pack: lengths add up to %zd, not the %zd keys", total, n);
        goto done;
    }
    Py_ssize_t points = lengths.len / 8;
    const int64_t *len = lengths.buf, *id = ids.buf, *key = keys.buf;
    PyObject *table = PyByteArray_FromStringAndSize(NULL, points * width * 8);
    if (!table) {
        goto done;
    }
    int64_t *row = (int64_t *)PyByteArray_AS_STRING(table);
    uint64_t outside = 0; /* nonzero once a key is outside [0, 2**31) or an id is not above the one before */
    for (Py_ssize_t p = 0; p < points; p++, row += width) {
        Py_ssize_t count = (Py_ssize_t)len[p];
        for (Py_ssize_t k = 0; k < count; k++) {
            outside |= (uint64_t)key[k] >> 31;
            outside |= k && id[k] <= id[k - 1];
            row[k] = ((KEY_LIMIT - 1 - key[k]) << 32) | k;
        }
        for (Py_ssize_t k = count; k < width; k++) {
            row[k] = INT64_MAX;
        }
        key += count;
        id += count;
    }
    if (outside) {
        Py_DECREF(table);
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue("(Nn)", table, width);
done:
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&keys);
    return result;
}

/* The buffers of a tie call, checked against each other. */
typedef struct {
    Py_buffer lengths, table, fields, whole;
    Py_ssize_t points, n, width;
} Sorted;

static void sorted_release(Sorted *x) {
    PyBuffer_Release(&x->lengths);
    PyBuffer_Release(&x->table);
    PyBuffer_Release(&x->fields);
    PyBuffer_Release(&x->whole);
}

static int sorted_open(Sorted *x, PyObject *args) {
    memset(x, 0, sizeof(*x));
    if (!PyArg_ParseTuple(args, "y*y*ny*y*", &x->lengths, &x->table, &x->width, &x->fields, &x->whole)) {
        return -1;
    }
    Py_ssize_t widest = 0;
    x->points = x->lengths.len / 8;
    x->n = total_of(&x->lengths, PY_SSIZE_T_MAX, &widest);
    if (x->n < 0) {
        return -1;
    }
    if (x->width < widest || x->table.len != x->points * x->width * 8) {
        PyErr_Format(PyExc_ValueError, "grid pack: a table of %zd bytes for %zd points of %zd (at most %zd values)",
                     x->table.len, x->points, x->width, widest);
        return -1;
    }
    if (x->whole.len != x->points) {
        PyErr_Format(PyExc_ValueError, "grid pack: a whole flag for %zd of %zd points", x->whole.len, x->points);
        return -1;
    }
    return 0;
}

/* Runs are read from each point's sorted row: values i..j-1 with one key (the row's high 32 bits), their
 * export indices the point's first plus the places in the low 32 bits. Only the places of values in runs
 * are read, so only they are checked (`bad_row`). */
static void bad_row(Py_ssize_t p) {
    PyErr_Format(PyExc_ValueError, "grid pack: row %zd of the value table is not its point's places", p);
}

/* The end of the run of row[i]'s key: the first value after i with another key, or count. */
static inline Py_ssize_t run_end(const int64_t *row, Py_ssize_t i, Py_ssize_t count) {
    Py_ssize_t j = i + 1;
    while (j < count && row[j] >> 32 == row[i] >> 32) {
        j++;
    }
    return j;
}

/* The count of fields not 0 in each byte of packed tie fields. */
static uint8_t nonzero_fields[256];

static PyObject *tied_of_ties(PyObject *self, PyObject *args) {
    (void)self;
    Sorted x;
    PyObject *result = NULL;
    uint8_t *kept = NULL;
    if (sorted_open(&x, args) < 0) {
        goto done;
    }
    const uint8_t *ties = x.fields.buf, *whole = x.whole.buf;
    if (x.fields.len < (x.n + 3) / 4) {
        PyErr_Format(PyExc_ValueError, "grid ties: %zd bytes for %zd values", x.fields.len, x.n);
        goto done;
    }
    Py_ssize_t nonzero = 0;
    for (Py_ssize_t i = 0; i < x.fields.len; i++) {
        nonzero += nonzero_fields[ties[i]];
    }
    kept = PyMem_Calloc((size_t)(x.n / 4 + 1), 1);
    if (!kept) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t stored = 0, in_runs = 0, from = 0;
    int fits = 1;
    const int64_t *len = x.lengths.buf;
    for (Py_ssize_t p = 0; p < x.points; from += (Py_ssize_t)len[p], p++) {
        const int64_t *row = (const int64_t *)x.table.buf + p * x.width;
        const Py_ssize_t count = (Py_ssize_t)len[p];
        for (Py_ssize_t i = 0, j; i < count; i = j) {
            j = run_end(row, i, count);
            if (j - i < 2) {
                continue;
            }
            int tied = j - i <= 4 && !whole[p];
            int64_t taken = 0, places = 0;
            for (Py_ssize_t k = i; k < j; k++) {
                int64_t place = row[k] & PLACE_MASK;
                if (place >= count) {
                    bad_row(p);
                    goto done;
                }
                int f = field_at(ties, from + (Py_ssize_t)place);
                in_runs += f != 0;
                if (!tied) {
                    fits &= f == 0;
                } else if (k < j - 1) { /* stored */
                    taken += i + ((k - i + f) & 3);
                    places += k;
                    kept[stored >> 2] |= (uint8_t)(f << ((stored & 3) << 1));
                    stored++;
                } else { /* the run's last: the position the others leave */
                    fits &= ((places - taken) & 3) == f;
                }
            }
        }
    }
    if (!fits || in_runs != nonzero) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyByteArray_FromStringAndSize((const char *)kept, (stored + 3) / 4);
done:
    PyMem_Free(kept);
    sorted_release(&x);
    return result;
}

static PyObject *ties_of_tied(PyObject *self, PyObject *args) {
    (void)self;
    Sorted x;
    PyObject *result = NULL;
    if (sorted_open(&x, args) < 0) {
        goto done;
    }
    const uint8_t *tied = x.fields.buf, *whole = x.whole.buf;
    Py_ssize_t available = 4 * x.fields.len, stored = 0;
    result = PyByteArray_FromStringAndSize(NULL, (x.n + 3) / 4);
    if (!result) {
        goto done;
    }
    uint8_t *out = (uint8_t *)PyByteArray_AS_STRING(result);
    memset(out, 0, (size_t)((x.n + 3) / 4));
    const int64_t *len = x.lengths.buf;
    Py_ssize_t from = 0;
    for (Py_ssize_t p = 0; p < x.points; from += (Py_ssize_t)len[p], p++) {
        const int64_t *row = (const int64_t *)x.table.buf + p * x.width;
        const Py_ssize_t count = (Py_ssize_t)len[p];
        for (Py_ssize_t i = 0, j; i < count; i = j) {
            j = run_end(row, i, count);
            if (j - i < 2 || j - i > 4 || whole[p]) {
                continue;
            }
            int64_t taken = 0, places = 0;
            for (Py_ssize_t k = i; k < j; k++) {
                int64_t place = row[k] & PLACE_MASK;
                if (place >= count) {
                    bad_row(p);
                    Py_CLEAR(result);
                    goto done;
                }
                int f;
                if (k < j - 1) {
                    f = stored < available ? field_at(tied, stored) : 0;
                    stored++;
                    taken += i + ((k - i + f) & 3);
                    places += k;
                } else { /* the position the others leave: the run's places less theirs */
                    f = (int)((places - taken) & 3);
                }
                Py_ssize_t at = from + (Py_ssize_t)place;
                out[at >> 2] |= (uint8_t)(f << ((at & 3) << 1));
            }
        }
    }
    if ((stored + 3) / 4 != x.fields.len) {
        PyErr_Format(PyExc_ValueError, "grid ties: %zd bytes for %zd tied values", x.fields.len, stored);
        Py_CLEAR(result);
    }
done:
    sorted_release(&x);
    return result;
}

static PyObject *width_groups(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer codes;
    Py_ssize_t names;
    PyObject *floor_out = NULL, *widths_out = NULL, *groups = NULL, *result = NULL;
    int32_t *top = NULL;
    if (!PyArg_ParseTuple(args, "y*n", &codes, &names)) {
        return NULL;
    }
    Py_ssize_t n = codes.len / 4;
    if (codes.len % 4 || names <= 0 || n % names) {
        PyErr_Format(PyExc_ValueError, "grid values: %zd bytes of int32 codes for %zd names at every point",
                     codes.len, names);
        goto done;
    }
    Py_ssize_t points = n / names;
    const int32_t *code = codes.buf;
    floor_out = PyByteArray_FromStringAndSize(NULL, names * 4);
    widths_out = PyByteArray_FromStringAndSize(NULL, names);
    top = PyMem_Malloc((size_t)names * 4);
    groups = PyDict_New();
    if (!floor_out || !widths_out || !top || !groups) {
        if (!top) {
            PyErr_NoMemory();
        }
        goto done;
    }
    int32_t *floor = (int32_t *)PyByteArray_AS_STRING(floor_out);
    uint8_t *widths = (uint8_t *)PyByteArray_AS_STRING(widths_out);
    for (Py_ssize_t c = 0; c < names; c++) { /* a column at a time: its least and largest in registers */
        int32_t least = points ? code[c] : 0, most = least;
        for (const int32_t *v = code + c + names, *end = code + n; v < end; v += names) {
            least = *v < least ? *v : least;
            most = *v > most ? *v : most;
        }
        floor[c] = least;
        top[c] = most;
    }
    Py_ssize_t per_width[MAX_WIDTH + 1] = {0};
    for (Py_ssize_t c = 0; c < names; c++) {
        int64_t spread = (int64_t)top[c] - floor[c];
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
        if (!w) {
            continue;
        }
        Py_ssize_t stride = per_width[w];
        const int32_t *v = code + c;
        if (w > 8) {
            uint16_t *out = (uint16_t *)part_of[w] + rank[w];
            for (Py_ssize_t p = 0; p < points; p++, v += names, out += stride) {
                *out = (uint16_t)(*v - floor[c]);
            }
        } else {
            uint8_t *out = (uint8_t *)part_of[w] + rank[w];
            for (Py_ssize_t p = 0; p < points; p++, v += names, out += stride) {
                *out = (uint8_t)(*v - floor[c]);
            }
        }
        rank[w]++;
    }
    result = PyTuple_Pack(3, floor_out, widths_out, groups);
done:
    Py_XDECREF(floor_out);
    Py_XDECREF(widths_out);
    Py_XDECREF(groups);
    PyMem_Free(top);
    PyBuffer_Release(&codes);
    return result;
}

static PyMethodDef methods[] = {
    {"value_table", value_table, METH_VARARGS, "Each point's keys and places as a row to sort, or None."},
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
