/* _columns: the loops of the checkpoint's column block (codec.py `Columns`), whose numpy forms stay in codec.py
 * as the reference and the path of what these do not take (a machine that is not little-endian).
 *
 * A column block holds each array as its bytes, byte-shuffled when its items are wider than a byte and it has
 * 64 or more of them (byte k of every element together: the planes of the (n, itemsize) byte table,
 * transposed); an int64 array of differences as its first value and the differences after it (wrapping
 * around), zigzag-coded (0, -1, 1, -2... as 0, 1, 2, 3...), then shuffled alike. numpy takes a dozen calls
 * through temporaries for each array, most of a checkpoint's arrays are a few hundred bytes, and numpy's fixed
 * cost per call is then most of the time: here each array is one call and one pass.
 *
 *   pack_column(array, mode) -> bytes | None
 *       The bytes `Columns.add` stores for a 1-D array in the machine's byte order (any strides): mode 0 its
 *       values as they are; mode 1 the zigzag differences of an int64 array's values, or of a float64 array's
 *       values as int64 when they are whole numbers below 2**53 in magnitude, with no NaN and no -0.0 (as
 *       codec.py `whole_ints` decides; an empty array is whole), else None.
 *   unpack_column(block, offset, n, itemsize) -> bytearray
 *       The bytes of the array of `n` items of `itemsize` bytes stored at `offset` (mode 0), un-shuffled.
 *   unpack_deltas(block, spans) -> bytearray
 *       For each (n, offset) or (n, offset, as_float) of `spans` (a sequence of tuples of ints), the n int64
 *       differences stored at `offset` summed back (wrapping around as int64 does), as int64, or as float64
 *       when as_float is true; one array after the other, in the machine's byte order.
 *   join_strings(strings) -> bytes | None
 *       `"\0".join(strings).encode()` of a list whose items are all of type str, none holding a NUL (what a
 *       column block stores for a list of strings: records.py `_take_arrays`), else None (not a list of str
 *       only, or a string with a NUL in it). A pass to measure and one to copy, with no joined str in between,
 *       when every string is ASCII.
 *   take_arrays(value, path, (plans, make_plan, ndarray, parts, planes, keys, coded, index, huffman,
 *               contiguous, strings)) -> (dict, int)
 *       records.py `_take_arrays_py` in one call (its Python form stays there as the reference and for a
 *       machine that is not little-endian): the copy of the state `value` with its arrays and string lists
 *       moved to a column block's `parts`, `planes` and `keys` (and the noise planes, by `huffman`, to
 *       `coded`), their index entries' JSON text appended to `index`, each array's plan taken from `plans` or
 *       made by `make_plan`; and the bytes added to the block.
 *
 * The block is written little-endian; an array of the other byte order, a length or offset past the end of
 * the block or negative, and an array of more than one dimension raise ValueError naming what was wrong
 * (take_arrays: TypeError for an array of more dimensions or another dtype, as `_take_arrays_py`);
 * nothing is read outside its buffer.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SHUFFLE_MIN 64 /* codec.py `_SHUFFLE_MIN`: shorter arrays are stored as they are */
#define STRINGS_MIN 8  /* records.py `_STRINGS_MIN`: shorter lists of strings stay in the JSON */
#define WHOLE_LIMIT 9007199254740992.0 /* 2**53: whole floats below it in magnitude are exact as int64 */

enum { PLAIN = 0, DIFFERENCES = 1 };

/* Whether a buffer's struct format says the other byte order than the machine's. */
static int foreign_order(const char *format) {
    if (!format) {
        return 0;
    }
#if PY_LITTLE_ENDIAN
    return format[0] == '>' || format[0] == '!';
#else
    return format[0] == '<';
#endif
}

/* The type code of a format, after its byte-order mark if any. */
static char format_code(const char *format) {
    if (!format) {
        return 'B';
    }
    if (format[0] == '@' || format[0] == '=' || format[0] == '<' || format[0] == '>' || format[0] == '!') {
        format++;
    }
    return format[0] && !format[1] ? format[0] : '\0';
}

static inline uint64_t zigzag(uint64_t d) {
    return (d << 1) ^ (0 - (d >> 63));
}

static inline uint64_t unzigzag(uint64_t z) {
    return (z >> 1) ^ (0 - (z & 1));
}

/* Little-endian stores and loads (the block's byte order) of 2, 4 and 8 bytes. */
static inline void store_le(uint8_t *to, uint64_t v, int size) {
#if PY_LITTLE_ENDIAN
    memcpy(to, &v, (size_t)size);
#else
    for (int k = 0; k < size; k++) {
        to[k] = (uint8_t)(v >> (8 * k));
    }
#endif
}

static inline uint64_t load_le(const uint8_t *from, int size) {
    uint64_t v = 0;
#if PY_LITTLE_ENDIAN
    memcpy(&v, from, (size_t)size);
#else
    for (int k = 0; k < size; k++) {
        v |= (uint64_t)from[k] << (8 * k);
    }
#endif
    return v;
}

/* Byte k of item i (`v`, of `size` bytes, little-endian) to plane[k][i], and back; written out for each size a
 * column has (a loop over the bytes is not unrolled at -O2, and costs six times as much). */
static inline void put_planes(uint8_t *const *plane, Py_ssize_t i, uint64_t v, int size) {
    plane[0][i] = (uint8_t)v;
    plane[1][i] = (uint8_t)(v >> 8);
    if (size > 2) {
        plane[2][i] = (uint8_t)(v >> 16);
        plane[3][i] = (uint8_t)(v >> 24);
    }
    if (size > 4) {
        plane[4][i] = (uint8_t)(v >> 32);
        plane[5][i] = (uint8_t)(v >> 40);
        plane[6][i] = (uint8_t)(v >> 48);
        plane[7][i] = (uint8_t)(v >> 56);
    }
}

static inline uint64_t get_planes(const uint8_t *const *plane, Py_ssize_t i, int size) {
    uint64_t v = (uint64_t)plane[0][i] | (uint64_t)plane[1][i] << 8;
    if (size > 2) {
        v |= (uint64_t)plane[2][i] << 16 | (uint64_t)plane[3][i] << 24;
    }
    if (size > 4) {
        v |= (uint64_t)plane[4][i] << 32 | (uint64_t)plane[5][i] << 40 | (uint64_t)plane[6][i] << 48 |
             (uint64_t)plane[7][i] << 56;
    }
    return v;
}

/* The planes of n items of `size` bytes (at most 8) from `block`: plane k starts at k * n. */
static inline void planes_of(uint8_t **plane, uint8_t *block, Py_ssize_t n, int size) {
    for (int k = 0; k < size; k++) {
        plane[k] = block + k * n;
    }
}

/* Byte k of each of n items of `item` bytes (`stride` apart) to plane k of `out` (n bytes each). */
static void shuffle(uint8_t *out, const char *src, Py_ssize_t n, Py_ssize_t item, Py_ssize_t stride) {
    uint8_t *plane[8];
    if (item == 2 || item == 4 || item == 8) {
        planes_of(plane, out, n, (int)item);
    }
    switch (item) {
    case 2:
        for (Py_ssize_t i = 0; i < n; i++, src += stride) {
            put_planes(plane, i, load_le((const uint8_t *)src, 2), 2);
        }
        break;
    case 4:
        for (Py_ssize_t i = 0; i < n; i++, src += stride) {
            put_planes(plane, i, load_le((const uint8_t *)src, 4), 4);
        }
        break;
    case 8:
        for (Py_ssize_t i = 0; i < n; i++, src += stride) {
            put_planes(plane, i, load_le((const uint8_t *)src, 8), 8);
        }
        break;
    default:
        for (Py_ssize_t i = 0; i < n; i++, src += stride) {
            for (Py_ssize_t k = 0; k < item; k++) {
                out[k * n + i] = (uint8_t)src[k];
            }
        }
    }
}

/* The inverse: item i of n from byte i of each plane of `in`, to `out` (item after item). */
static void unshuffle(uint8_t *out, const uint8_t *in, Py_ssize_t n, Py_ssize_t item) {
    uint8_t *plane[8];
    if (item == 2 || item == 4 || item == 8) {
        planes_of(plane, (uint8_t *)in, n, (int)item);
    }
    const uint8_t *const *from = (const uint8_t *const *)plane;
    switch (item) {
    case 2:
        for (Py_ssize_t i = 0; i < n; i++) {
            store_le(out + 2 * i, get_planes(from, i, 2), 2);
        }
        break;
    case 4:
        for (Py_ssize_t i = 0; i < n; i++) {
            store_le(out + 4 * i, get_planes(from, i, 4), 4);
        }
        break;
    case 8:
        for (Py_ssize_t i = 0; i < n; i++) {
            store_le(out + 8 * i, get_planes(from, i, 8), 8);
        }
        break;
    default:
        for (Py_ssize_t i = 0; i < n; i++, out += item) {
            for (Py_ssize_t k = 0; k < item; k++) {
                out[k] = in[k * n + i];
            }
        }
    }
}

/* The zigzag differences of n int64 values (`stride` apart; `whole`: float64 values, as int64), to `out`: 8
 * bytes each, or byte k of each in plane k (`shuffled`). -1 when `whole` and a value is not a whole number
 * below 2**53 in magnitude, or is -0.0 (then `out` holds part of them). Called with constant flags: a
 * loop for each. */
static inline int differences(uint8_t *out, const char *src, Py_ssize_t n, Py_ssize_t stride, int whole,
                              int shuffled) {
    uint8_t *plane[8];
    planes_of(plane, out, n, 8);
    uint64_t before = 0;
    for (Py_ssize_t i = 0; i < n; i++, src += stride) {
        uint64_t value;
        memcpy(&value, src, 8);
        if (whole) {
            double x, back;
            memcpy(&x, src, 8);
            if (!(fabs(x) < WHOLE_LIMIT)) { /* also NaN */
                return -1;
            }
            int64_t as_int = (int64_t)x;
            back = (double)as_int;
            uint64_t bits;
            memcpy(&bits, &back, 8);
            if (bits != value) { /* a fraction comes back another number, -0.0 as 0.0 */
                return -1;
            }
            value = (uint64_t)as_int;
        }
        uint64_t z = zigzag(value - before);
        before = value;
        if (shuffled) {
            put_planes(plane, i, z, 8);
        } else {
            store_le(out + 8 * i, z, 8);
        }
    }
    return 0;
}

/* Sums of the n zigzag differences at `in` (8 bytes each, or shuffled), as int64 or float64, to `out`. */
static inline void sums(char *out, const uint8_t *in, Py_ssize_t n, int shuffled, int as_float) {
    uint8_t *plane[8];
    planes_of(plane, (uint8_t *)in, n, 8);
    const uint8_t *const *from = (const uint8_t *const *)plane;
    uint64_t sum = 0;
    for (Py_ssize_t i = 0; i < n; i++, out += 8) {
        uint64_t z = shuffled ? get_planes(from, i, 8) : load_le(in + 8 * i, 8);
        sum += unzigzag(z);
        int64_t value;
        memcpy(&value, &sum, 8);
        if (as_float) {
            double x = (double)value;
            memcpy(out, &x, 8);
        } else {
            memcpy(out, &value, 8);
        }
    }
}

static PyObject *pack_column(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "pack_column takes an array and a mode (%zd arguments given)", nargs);
        return NULL;
    }
    long mode = PyLong_AsLong(args[1]);
    if (mode == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (mode != PLAIN && mode != DIFFERENCES) {
        PyErr_Format(PyExc_ValueError, "column: mode %ld (0 plain, 1 int64 differences)", mode);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_RECORDS_RO) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t item = view.itemsize;
    if (view.ndim != 1) {
        PyErr_Format(PyExc_ValueError, "column: an array of %d dimensions (1 wanted)", view.ndim);
        goto done;
    }
    if (item < 1 || foreign_order(view.format)) {
        PyErr_Format(PyExc_ValueError, "column: items of %zd bytes in format '%s', not in the machine's byte order",
                     item, view.format ? view.format : "B");
        goto done;
    }
    char code = format_code(view.format);
    int whole = code == 'd'; /* float64: its values as int64 if whole */
    if (mode == DIFFERENCES && !(item == 8 && (code == 'q' || code == 'l' || whole))) {
        PyErr_Format(PyExc_ValueError, "column: int64 differences of an array of format '%s' (int64 or float64 wanted)",
                     view.format ? view.format : "B");
        goto done;
    }
    Py_ssize_t n = view.shape[0], stride = view.strides[0];
    if (n > PY_SSIZE_T_MAX / item) {
        PyErr_Format(PyExc_ValueError, "column: %zd items of %zd bytes", n, item);
        goto done;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * item);
    if (!out) {
        goto done;
    }
    uint8_t *to = (uint8_t *)PyBytes_AS_STRING(out);
    const char *src = view.buf;
    int shuffled = item > 1 && n >= SHUFFLE_MIN;
    if (mode == PLAIN) {
        if (shuffled) {
            shuffle(to, src, n, item, stride);
        } else if (stride == item) {
            if (n) {
                memcpy(to, src, (size_t)(n * item));
            }
        } else {
            for (Py_ssize_t i = 0; i < n; i++, src += stride) {
                memcpy(to + i * item, src, (size_t)item);
            }
        }
        result = out;
        goto done;
    }
    if (whole) {
        whole = shuffled ? differences(to, src, n, stride, 1, 1) : differences(to, src, n, stride, 1, 0);
    } else {
        whole = shuffled ? differences(to, src, n, stride, 0, 1) : differences(to, src, n, stride, 0, 0);
    }
    if (whole < 0) {
        Py_DECREF(out);
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = out;
done:
    PyBuffer_Release(&view);
    return result;
}

/* The block's buffer and the checks every reading of it makes: `n` items of `item` bytes at `offset`. */
static int in_block(const Py_buffer *block, Py_ssize_t offset, Py_ssize_t n, Py_ssize_t item, const char *what) {
    if (n < 0 || offset < 0 || item < 1) {
        PyErr_Format(PyExc_ValueError, "%s: length %zd, offset %zd, item size %zd", what, n, offset, item);
        return -1;
    }
    if (offset > block->len || n > (block->len - offset) / item) {
        PyErr_Format(PyExc_ValueError, "%s: length %zd, offset %zd of %zd-byte items is past the block's %zd bytes",
                     what, n, offset, item, block->len);
        return -1;
    }
    return 0;
}

static PyObject *unpack_column(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer block;
    Py_ssize_t offset, n, item;
    if (!PyArg_ParseTuple(args, "y*nnn", &block, &offset, &n, &item)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (in_block(&block, offset, n, item, "column") < 0) {
        goto done;
    }
    result = PyByteArray_FromStringAndSize(NULL, n * item);
    if (!result) {
        goto done;
    }
    const uint8_t *in = (const uint8_t *)block.buf + offset;
    uint8_t *out = (uint8_t *)PyByteArray_AS_STRING(result);
    if (item > 1 && n >= SHUFFLE_MIN) {
        unshuffle(out, in, n, item);
    } else if (n) {
        memcpy(out, in, (size_t)(n * item));
    }
done:
    PyBuffer_Release(&block);
    return result;
}

/* Span i of `spans`: its length, offset and whether it is read as float64; -1 with ValueError set. Only ints
 * are read (a bool is one): reading them runs no Python code, which could change `spans`. */
static int span_at(PyObject *spans, Py_ssize_t i, Py_ssize_t *n, Py_ssize_t *offset, int *as_float) {
    PyObject *span = PySequence_Fast_GET_ITEM(spans, i);
    Py_ssize_t size = PyTuple_Check(span) ? PyTuple_GET_SIZE(span) : 0;
    int ints = size == 2 || size == 3;
    for (Py_ssize_t k = 0; ints && k < size; k++) {
        ints = PyLong_Check(PyTuple_GET_ITEM(span, k));
    }
    if (!ints) {
        PyErr_Format(PyExc_ValueError, "column sums: span %zd is not a (length, offset[, as float]) tuple of ints", i);
        return -1;
    }
    *n = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 0));
    if (!PyErr_Occurred()) {
        *offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 1));
    }
    long flag = size == 3 && !PyErr_Occurred() ? PyLong_AsLong(PyTuple_GET_ITEM(span, 2)) : 0;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "column sums: span %zd holds an int past the block", i);
        return -1;
    }
    *as_float = flag != 0;
    return 0;
}

static PyObject *unpack_deltas(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer block;
    PyObject *given, *spans = NULL;
    if (!PyArg_ParseTuple(args, "y*O", &block, &given)) {
        return NULL;
    }
    PyObject *result = NULL;
    spans = PySequence_Fast(given, "column sums: spans must be a sequence of (length, offset[, as float])");
    if (!spans) {
        goto done;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(spans), total = 0, n, offset;
    int as_float;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (span_at(spans, i, &n, &offset, &as_float) < 0 || in_block(&block, offset, n, 8, "column sums") < 0) {
            goto done;
        }
        total += n; /* each n is at most the block's length / 8: no overflow */
        if (total > PY_SSIZE_T_MAX / 8) {
            PyErr_Format(PyExc_ValueError, "column sums: %zd values", total);
            goto done;
        }
    }
    result = PyByteArray_FromStringAndSize(NULL, total * 8);
    if (!result) {
        goto done;
    }
    char *out = PyByteArray_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        /* Read again: the checks above hold (`spans` is a list or tuple of our own: no Python code runs). */
        span_at(spans, i, &n, &offset, &as_float);
        const uint8_t *in = (const uint8_t *)block.buf + offset;
        if (n >= SHUFFLE_MIN) {
            as_float ? sums(out, in, n, 1, 1) : sums(out, in, n, 1, 0);
        } else {
            as_float ? sums(out, in, n, 0, 1) : sums(out, in, n, 0, 0);
        }
        out += 8 * n;
    }
done:
    Py_XDECREF(spans);
    PyBuffer_Release(&block);
    return result;
}

static PyObject *join_strings(PyObject *self, PyObject *strings) {
    (void)self;
    if (!PyList_CheckExact(strings)) {
        PyErr_SetString(PyExc_TypeError, "join_strings: a list wanted");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(strings);
    Py_ssize_t total = n > 0 ? n - 1 : 0; /* the NULs between them */
    int ascii = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(strings, i);
        if (!PyUnicode_CheckExact(s)) {
            Py_RETURN_NONE;
        }
        if (!PyUnicode_IS_ASCII(s)) {
            ascii = 0;
            break;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(s);
        if (memchr(PyUnicode_DATA(s), 0, (size_t)len) != NULL) {
            Py_RETURN_NONE;
        }
        total += len;
    }
    if (!ascii) { /* as Python does it: join, count the NULs, encode */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!PyUnicode_CheckExact(PyList_GET_ITEM(strings, i))) {
                Py_RETURN_NONE;
            }
        }
        PyObject *nul = PyUnicode_FromStringAndSize("\0", 1);
        if (nul == NULL) {
            return NULL;
        }
        PyObject *text = PyUnicode_Join(nul, strings);
        Py_ssize_t nuls = text == NULL ? -1 : PyUnicode_Count(text, nul, 0, PY_SSIZE_T_MAX);
        Py_DECREF(nul);
        if (nuls < 0) {
            Py_XDECREF(text);
            return NULL;
        }
        PyObject *result = nuls == n - 1 ? PyUnicode_AsUTF8String(text) : Py_NewRef(Py_None);
        Py_DECREF(text);
        return result;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL) {
        return NULL;
    }
    char *at = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(strings, i);
        Py_ssize_t len = PyUnicode_GET_LENGTH(s);
        if (i) {
            *at++ = '\0';
        }
        memcpy(at, PyUnicode_DATA(s), (size_t)len);
        at += len;
    }
    return result;
}

/* take_arrays: records.py `_take_arrays_py` (its reference, and the path of a machine that is not
 * little-endian) in one call. */
typedef struct {
    PyObject *plans, *make_plan, *ndarray, *parts, *planes, *keys, *coded, *index, *huffman, *contiguous, *strings;
    Py_ssize_t size;
} Take;

static PyObject *take(Take *c, PyObject *value, PyObject *path);

/* Append a part of `data` bytes: its planes `planes` (its length when shuffled, else its size) and `key`
 * (None when shuffled). */
static int add_part(Take *c, PyObject *data, Py_ssize_t planes, PyObject *key) {
    PyObject *size = PyLong_FromSsize_t(planes);
    if (size == NULL) {
        return -1;
    }
    int fail = PyList_Append(c->parts, data) < 0 || PyList_Append(c->planes, size) < 0 ||
               PyList_Append(c->keys, key) < 0;
    Py_DECREF(size);
    if (fail) {
        return -1;
    }
    c->size += PyBytes_GET_SIZE(data);
    return 0;
}

static int append_entry(Take *c, PyObject *entry) {
    if (entry == NULL) {
        return -1;
    }
    int r = PyList_Append(c->index, entry);
    Py_DECREF(entry);
    return r;
}

/* The plan of (path, name, what): kept, or made (and kept) by `make_plan`. A new reference. */
static PyObject *plan_of(Take *c, PyObject *path, PyObject *name, PyObject *what) {
    PyObject *key = PyTuple_Pack(3, path, name, what);
    if (key == NULL) {
        return NULL;
    }
    PyObject *plan = PyDict_GetItemWithError(c->plans, key);
    Py_DECREF(key);
    if (plan != NULL) {
        Py_INCREF(plan);
    } else if (!PyErr_Occurred()) {
        plan = PyObject_CallFunctionObjArgs(c->make_plan, path, name, what, NULL);
    }
    if (plan != NULL && (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 5)) {
        Py_DECREF(plan);
        PyErr_SetString(PyExc_TypeError, "take_arrays: a plan is a tuple of 5");
        return NULL;
    }
    return plan;
}

static int take_array(Take *c, PyObject *v, PyObject *path, PyObject *name) {
    PyObject *dtype = PyObject_GetAttrString(v, "dtype");
    if (dtype == NULL) {
        return -1;
    }
    PyObject *plan = plan_of(c, path, name, dtype);
    if (plan == NULL) {
        Py_DECREF(dtype);
        return -1;
    }
    int result = -1;
    PyObject *ndim_obj = PyObject_GetAttrString(v, "ndim");
    long ndim = ndim_obj == NULL ? -1 : PyLong_AsLong(ndim_obj);
    Py_XDECREF(ndim_obj);
    if (ndim == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (ndim != 1) {
        PyObject *last = PyTuple_Pack(1, name);
        PyObject *full = last ? PySequence_Concat(path, last) : NULL;
        Py_XDECREF(last);
        PyObject *dot = PyUnicode_FromString(".");
        PyObject *where = full && dot ? PyUnicode_Join(dot, full) : NULL;
        PyObject *str = PyObject_GetAttrString(dtype, "str");
        if (where && str) {
            PyErr_Format(PyExc_TypeError, "%U: an array of %ld dimensions, dtype %S", where, ndim, str);
        }
        Py_XDECREF(full);
        Py_XDECREF(dot);
        Py_XDECREF(where);
        Py_XDECREF(str);
        goto done;
    }
    PyObject *head = PyTuple_GET_ITEM(plan, 0), *key = PyTuple_GET_ITEM(plan, 2);
    PyObject *delta_key = PyTuple_GET_ITEM(plan, 3);
    long coding = PyLong_AsLong(PyTuple_GET_ITEM(plan, 1));
    long itemsize = PyLong_AsLong(PyTuple_GET_ITEM(plan, 4));
    Py_ssize_t n = PyObject_Length(v);
    if ((coding == -1 || itemsize == -1 || n < 0) && PyErr_Occurred()) {
        goto done;
    }
    if (coding > 0 && n) { /* a noise plane: Huffman-coded, after the block */
        PyObject *flags = PyObject_GetAttrString(v, "flags");
        PyObject *contiguous = flags ? PyObject_GetAttrString(flags, "c_contiguous") : NULL;
        Py_XDECREF(flags);
        int is = contiguous ? PyObject_IsTrue(contiguous) : -1;
        Py_XDECREF(contiguous);
        if (is < 0) {
            goto done;
        }
        PyObject *array = is ? Py_NewRef(v) : PyObject_CallOneArg(c->contiguous, v);
        PyObject *width = array ? PyLong_FromLong(coding) : NULL;
        PyObject *data = width ? PyObject_CallFunctionObjArgs(c->huffman, array, width, NULL) : NULL;
        Py_XDECREF(array);
        Py_XDECREF(width);
        if (data == NULL) {
            goto done;
        }
        int fail = PyList_Append(c->coded, data);
        Py_DECREF(data);
        if (fail || append_entry(c, PyUnicode_FromFormat("%U%zd,2]", head, n)) < 0) {
            goto done;
        }
        result = 0;
        goto done;
    }
    PyObject *args[2] = {v, NULL};
    if (coding && n >= 4) { /* int64 differences, when whole */
        args[1] = PyLong_FromLong(DIFFERENCES);
        PyObject *data = args[1] ? pack_column(NULL, args, 2) : NULL;
        Py_XDECREF(args[1]);
        if (data == NULL) {
            goto done;
        }
        if (data != Py_None) {
            int fail = add_part(c, data, n >= SHUFFLE_MIN ? n : PyBytes_GET_SIZE(data), n >= SHUFFLE_MIN ? Py_None : delta_key);
            Py_DECREF(data);
            if (fail || append_entry(c, PyUnicode_FromFormat("%U%zd,1]", head, n)) < 0) {
                goto done;
            }
            result = 0;
            goto done;
        }
        Py_DECREF(data);
    }
    args[1] = PyLong_FromLong(PLAIN);
    PyObject *data = args[1] ? pack_column(NULL, args, 2) : NULL;
    Py_XDECREF(args[1]);
    if (data == NULL) {
        goto done;
    }
    int shuffled = itemsize > 1 && n >= SHUFFLE_MIN;
    int fail = add_part(c, data, shuffled ? n : PyBytes_GET_SIZE(data), shuffled ? Py_None : key);
    Py_DECREF(data);
    if (fail || append_entry(c, PyUnicode_FromFormat("%U%zd]", head, n)) < 0) {
        goto done;
    }
    result = 0;
done:
    Py_DECREF(plan);
    Py_DECREF(dtype);
    return result;
}

static int plain_type(PyObject *item) {
    return item == Py_None || PyLong_CheckExact(item) || PyFloat_CheckExact(item) || PyUnicode_CheckExact(item) ||
           PyBool_Check(item);
}

static PyObject *take(Take *c, PyObject *value, PyObject *path) {
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *k, *item;
    while (PyDict_Next(value, &pos, &k, &item)) {
        if (plain_type(item)) {
            if (PyDict_SetItem(out, k, item) < 0) {
                goto fail;
            }
            continue;
        }
        Py_INCREF(k);
        PyObject *v = Py_NewRef(item);
        PyTypeObject *kind = Py_TYPE(v);
        int is_array = (PyObject *)kind == c->ndarray, is_dict = kind == &PyDict_Type;
        int is_list = kind == &PyList_Type, step = -1;
        if (!is_array && !is_dict && !is_list) {
            PyObject *resolve = PyObject_GetAttrString(v, "resolve_state");
            if (resolve == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                    goto item_done;
                }
                PyErr_Clear();
            } else { /* a part the detector left for the encoder to finish */
                PyObject *resolved = PyObject_CallNoArgs(resolve);
                Py_DECREF(resolve);
                if (resolved == NULL) {
                    goto item_done;
                }
                Py_SETREF(v, resolved);
                kind = Py_TYPE(v);
            }
            is_array = (PyObject *)kind == c->ndarray;
            if (!is_array) {
                is_array = PyObject_IsInstance(v, c->ndarray);
                if (is_array < 0) {
                    goto item_done;
                }
            }
            is_dict = !is_array && PyDict_Check(v);
            is_list = kind == &PyList_Type;
        }
        if (is_array) {
            if (PyDict_SetItem(out, k, Py_None) < 0 || take_array(c, v, path, k) < 0) {
                goto item_done;
            }
        } else if (is_dict) {
            PyObject *name = PyTuple_Pack(1, k);
            PyObject *inner = name ? PySequence_Concat(path, name) : NULL;
            Py_XDECREF(name);
            PyObject *taken = inner ? take(c, v, inner) : NULL;
            Py_XDECREF(inner);
            int r = taken ? PyDict_SetItem(out, k, taken) : -1;
            Py_XDECREF(taken);
            if (r < 0) {
                goto item_done;
            }
        } else {
            PyObject *data = NULL;
            if (is_list && PyList_GET_SIZE(v) >= STRINGS_MIN) {
                data = join_strings(NULL, v);
                if (data == NULL) {
                    goto item_done;
                }
            }
            if (data != NULL && data != Py_None) {
                PyObject *plan = plan_of(c, path, k, c->strings);
                int fail = plan == NULL || add_part(c, data, PyBytes_GET_SIZE(data), PyTuple_GET_ITEM(plan, 2)) < 0 ||
                           append_entry(c, PyUnicode_FromFormat("%U%zd,%zd]", PyTuple_GET_ITEM(plan, 0),
                                                                PyList_GET_SIZE(v), PyBytes_GET_SIZE(data))) < 0 ||
                           PyDict_SetItem(out, k, Py_None) < 0;
                Py_XDECREF(plan);
                Py_DECREF(data);
                if (fail) {
                    goto item_done;
                }
            } else {
                Py_XDECREF(data);
                if (PyDict_SetItem(out, k, v) < 0) {
                    goto item_done;
                }
            }
        }
        step = 0;
    item_done:
        Py_DECREF(v);
        Py_DECREF(k);
        if (step < 0) {
            goto fail;
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *take_arrays(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *value, *path;
    Take c = {0};
    if (!PyArg_ParseTuple(args, "O!O!(O!OOO!O!O!O!O!OOO!):take_arrays", &PyDict_Type, &value, &PyTuple_Type, &path,
                          &PyDict_Type, &c.plans, &c.make_plan, &c.ndarray, &PyList_Type, &c.parts, &PyList_Type,
                          &c.planes, &PyList_Type, &c.keys, &PyList_Type, &c.coded, &PyList_Type, &c.index, &c.huffman,
                          &c.contiguous, &PyUnicode_Type, &c.strings)) {
        return NULL;
    }
    PyObject *out = take(&c, value, path);
    return out == NULL ? NULL : Py_BuildValue("(Nn)", out, c.size);
}

static PyMethodDef methods[] = {
    {"pack_column", (PyCFunction)(void (*)(void))pack_column, METH_FASTCALL,
     "The bytes a column block stores for an array (mode 0 plain, 1 int64 differences), or None."},
    {"unpack_column", unpack_column, METH_VARARGS, "The bytes of an array stored as it is (un-shuffled)."},
    {"unpack_deltas", unpack_deltas, METH_VARARGS, "Int64 differences stored at each span, summed back."},
    {"join_strings", join_strings, METH_O, "A list of strings joined by NUL, as UTF-8, or None."},
    {"take_arrays", take_arrays, METH_VARARGS, "A state's arrays moved to a column block's lists (records.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_columns", "The loops of the checkpoint's column block.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__columns(void) {
    return PyModule_Create(&module);
}
