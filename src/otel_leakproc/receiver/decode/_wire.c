/* _wire: a bounded reader of protobuf wire data, for the vectorised pprof reader (pprof_fast.py).
 *
 * It does the byte-level loops, nothing of pprof's meaning: it finds the fields of messages and decodes
 * their varints into flat arrays that Python wraps with numpy.frombuffer (native-endian int64/uint64,
 * returned as bytearray so the arrays are writable). Three functions, each over a buffer `data` (any
 * contiguous bytes-like object) and byte spans of it:
 *
 *   index(data, start, end, numbers) -> tuple[bytearray, ...]
 *       The fields of the one message data[start:end]: for each field number in `numbers` (a tuple of
 *       at most 8), the (body start, body end) of every length-delimited field with that number, in
 *       order, as int64 pairs. Other fields are stepped over.
 *
 *   repeated_varints(data, spans, numbers, messages) -> tuple[tuple[bytearray, bytearray], ...]
 *       For each message span (`spans`: int64 (start, end) pairs, e.g. from `index`), the values of the
 *       repeated varint fields in `numbers` (at most 8), packed or not, in the order protobuf merges
 *       them: per number, (every value as uint64, the count of each message as int64). A field in
 *       `messages` must be length-delimited and hold well-formed fields (one level deep: their own
 *       length-delimited bodies are not read). Other fields are stepped over.
 *
 *   table(data, spans, width, nested) -> (bytearray, bytearray)
 *       For each message span, its varint fields numbered 1..width-1 as row i of an (n, width) uint64
 *       table (absent: 0; a repeated one: the last, as protobuf reads a singular field), and the
 *       length-delimited fields numbered `nested` as (row, body start, body end) int64 triples. Varint
 *       fields numbered `width` or above are stepped over; any other field is an error.
 *
 * Every read is bounds-checked against its message's end (a span outside `data` is an error too).
 * Malformed wire data raises WireError (a ValueError) naming the byte offset in `data` and the fault:
 * a truncated varint, one wider than 64 bits, a tag wider than 32 bits or 5 bytes, field number 0,
 * a length over 5 bytes or past the end of its message, a group or an unknown wire type, or a field
 * with a wire type other than the one asked for. These are what upb rejects or what the caller does not
 * read; the caller then leaves the profile to its message-by-message path, which names the field.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_NUMBERS 8
#define MAX_WIDTH 64

/* The readers of one field, inlined into each loop (the pointers they advance then stay in registers). */
#define READER static inline Py_ALWAYS_INLINE

static PyObject *WireError;

/* A growing array of int64/uint64 (8-byte items). */
typedef struct {
    uint64_t *items;
    Py_ssize_t len;
    Py_ssize_t cap;
} Grow;

/* Room for `extra` more items. */
static int grow_reserve(Grow *g, Py_ssize_t extra) {
    if (g->cap - g->len < extra) {
        Py_ssize_t cap = g->cap ? 2 * g->cap : 256;
        if (cap - g->len < extra) {
            cap = g->len + extra;
        }
        if (cap > PY_SSIZE_T_MAX / 8) {
            PyErr_NoMemory();
            return -1;
        }
        uint64_t *items = PyMem_Realloc(g->items, (size_t)cap * 8);
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        g->items = items;
        g->cap = cap;
    }
    return 0;
}

static inline int grow_push(Grow *g, uint64_t v) {
    if (g->len == g->cap && grow_reserve(g, 1) < 0) {
        return -1;
    }
    g->items[g->len++] = v;
    return 0;
}

static PyObject *grow_finish(Grow *g) {
    PyObject *out = PyByteArray_FromStringAndSize((const char *)g->items, g->len * 8);
    PyMem_Free(g->items);
    g->items = NULL;
    g->len = g->cap = 0;
    return out;
}

static void grow_free(Grow *g) {
    PyMem_Free(g->items);
    g->items = NULL;
}

/* Where a read failed, for the error message. */
typedef struct {
    const uint8_t *base; /* data[0] */
} Ctx;

static Py_NO_INLINE void fail(const Ctx *c, const uint8_t *at, const char *what) {
    PyErr_Format(WireError, "byte %zd: %s", (Py_ssize_t)(at - c->base), what);
}

/* The packed varints [q, end) written from `out` on: where the values end. When one of them is truncated
 * or wider than 64 bits, *bad is set to where it starts (else left alone). The loop of the large arrays,
 * kept in registers. */
static uint64_t *decode_packed(const uint8_t *q, const uint8_t *end, uint64_t *out, const uint8_t **bad) {
    while (q < end) {
        uint64_t b = *q;
        /* Varints of one or two bytes (location ids below 16384) without a branch on which: the branch
         * below is taken only for longer ones and at the last byte of the run. */
        if (q + 1 < end && !(b & q[1] & 0x80)) {
            uint64_t two = b >> 7;
            *out++ = (b & 0x7F) | ((uint64_t)(q[1] & 0x7F) << 7 & (0 - two));
            q += 1 + two;
            continue;
        }
        if (b < 0x80) {
            *out++ = b;
            q++;
            continue;
        }
        const uint8_t *at = q++;
        uint64_t v = b & 0x7F;
        for (int shift = 7;; shift += 7) {
            if (q >= end) {
                *bad = at;
                return out;
            }
            b = *q++;
            if (shift == 63 && b > 1) {
                *bad = at;
                return out;
            }
            v |= (b & 0x7F) << shift;
            if (b < 0x80) {
                break;
            }
        }
        *out++ = v;
    }
    return out;
}

/* A varint of at most 10 bytes and 64 bits at *p, ending by `end`; advances *p. */
READER int read_varint(const Ctx *c, const uint8_t **p, const uint8_t *end, uint64_t *out) {
    const uint8_t *q = *p;
    if (q < end && *q < 0x80) { /* the usual one-byte case */
        *out = *q;
        *p = q + 1;
        return 0;
    }
    uint64_t v = 0;
    for (int k = 0; k < 10; k++) {
        if (q >= end) {
            fail(c, *p, "truncated varint");
            return -1;
        }
        uint8_t b = *q++;
        if (k == 9 && b > 1) {
            fail(c, *p, "varint wider than 64 bits");
            return -1;
        }
        v |= (uint64_t)(b & 0x7F) << (7 * k);
        if (b < 0x80) {
            *out = v;
            *p = q;
            return 0;
        }
    }
    fail(c, *p, "varint wider than 64 bits");
    return -1; /* (not reached: a tenth byte above 1 fails first) */
}

/* A varint of at most 5 bytes holding at most 32 bits (what upb takes for tags and lengths). */
READER int read_varint32(const Ctx *c, const uint8_t **p, const uint8_t *end, uint64_t *out, const char *what) {
    const uint8_t *at = *p;
    if (read_varint(c, p, end, out) < 0) {
        return -1;
    }
    if (*p - at > 5 || *out > 0xFFFFFFFFu) {
        PyErr_Format(WireError, "byte %zd: %s wider than 32 bits", (Py_ssize_t)(at - c->base), what);
        return -1;
    }
    return 0;
}

/* A field's tag: its number (at least 1) and wire type. */
READER int read_tag(const Ctx *c, const uint8_t **p, const uint8_t *end, uint32_t *number, int *wire) {
    const uint8_t *at = *p;
    uint64_t tag;
    if (read_varint32(c, p, end, &tag, "tag") < 0) {
        return -1;
    }
    if ((tag >> 3) == 0) {
        fail(c, at, "field number 0");
        return -1;
    }
    *number = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    return 0;
}

/* A length-delimited field's body after its tag: [*body, *body_end) inside `end`; advances *p past it. */
READER int read_body(const Ctx *c, const uint8_t **p, const uint8_t *end, const uint8_t **body,
                     const uint8_t **body_end) {
    const uint8_t *at = *p;
    uint64_t length;
    if (read_varint32(c, p, end, &length, "length") < 0) {
        return -1;
    }
    if (length > (uint64_t)(end - *p)) {
        PyErr_Format(WireError, "byte %zd: length %llu runs past the end of its message (%zd bytes left)",
                     (Py_ssize_t)(at - c->base), (unsigned long long)length, (Py_ssize_t)(end - *p));
        return -1;
    }
    *body = *p;
    *body_end = *p + length;
    *p = *body_end;
    return 0;
}

/* Steps over the body of a field of wire type `wire` whose tag started at `at`. */
READER int skip_field(const Ctx *c, const uint8_t *at, const uint8_t **p, const uint8_t *end, int wire) {
    uint64_t ignored;
    const uint8_t *body, *body_end;
    switch (wire) {
    case 0:
        return read_varint(c, p, end, &ignored);
    case 1:
    case 5: {
        Py_ssize_t size = wire == 1 ? 8 : 4;
        if (end - *p < size) {
            fail(c, at, "fixed-width field runs past the end of its message");
            return -1;
        }
        *p += size;
        return 0;
    }
    case 2:
        return read_body(c, p, end, &body, &body_end);
    case 3:
    case 4:
        fail(c, at, "group (wire type 3 or 4): not read");
        return -1;
    default:
        fail(c, at, "unknown wire type (6 or 7)");
        return -1;
    }
}

/* Whether [p, end) is a run of well-formed fields (their length-delimited bodies not read). */
static int check_fields(const Ctx *c, const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        const uint8_t *at = p;
        uint32_t number;
        int wire;
        if (read_tag(c, &p, end, &number, &wire) < 0 || skip_field(c, at, &p, end, wire) < 0) {
            return -1;
        }
    }
    return 0;
}

static int wrong_wire(const Ctx *c, const uint8_t *at, uint32_t number, int wire, const char *wanted) {
    PyErr_Format(WireError, "byte %zd: field %u has wire type %d, expected %s", (Py_ssize_t)(at - c->base),
                 (unsigned)number, wire, wanted);
    return -1;
}

/* The field numbers of a tuple argument (at most MAX_NUMBERS, each 1..2^29-1). */
static int parse_numbers(PyObject *tuple, uint32_t *numbers, Py_ssize_t *n, const char *what) {
    if (!PyTuple_Check(tuple)) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple of field numbers", what);
        return -1;
    }
    *n = PyTuple_GET_SIZE(tuple);
    if (*n > MAX_NUMBERS) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d field numbers", what, MAX_NUMBERS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(tuple, i));
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (v < 1 || v > 0x1FFFFFFF) {
            PyErr_Format(PyExc_ValueError, "%s: %ld is not a field number", what, v);
            return -1;
        }
        numbers[i] = (uint32_t)v;
    }
    return 0;
}

static inline Py_ssize_t find_number(const uint32_t *numbers, Py_ssize_t n, uint32_t number) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (numbers[i] == number) {
            return i;
        }
    }
    return -1;
}

/* The spans argument: int64 (start, end) pairs, each inside data (length `size`). */
typedef struct {
    Py_buffer view;
    Py_ssize_t n;
    Py_ssize_t total; /* bytes of all spans together (an upper bound on the varints they hold) */
} Spans;

static int get_spans(PyObject *obj, Py_ssize_t size, Spans *s) {
    if (PyObject_GetBuffer(obj, &s->view, PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    if (s->view.len % 16) {
        PyBuffer_Release(&s->view);
        PyErr_SetString(PyExc_ValueError, "spans must hold int64 (start, end) pairs");
        return -1;
    }
    s->n = s->view.len / 16;
    s->total = 0;
    const char *raw = s->view.buf;
    for (Py_ssize_t i = 0; i < s->n; i++) {
        int64_t start, end;
        memcpy(&start, raw + 16 * i, 8);
        memcpy(&end, raw + 16 * i + 8, 8);
        if (start < 0 || start > end || end > size) {
            PyBuffer_Release(&s->view);
            PyErr_Format(WireError, "span %zd: [%lld, %lld) is not inside the %zd bytes of data", i,
                         (long long)start, (long long)end, size);
            return -1;
        }
        if (end - start > PY_SSIZE_T_MAX / 8 - s->total) {
            PyBuffer_Release(&s->view);
            PyErr_NoMemory();
            return -1;
        }
        s->total += (Py_ssize_t)(end - start);
    }
    return 0;
}

static inline void span_at(const Spans *s, Py_ssize_t i, int64_t *start, int64_t *end) {
    const char *raw = s->view.buf;
    memcpy(start, raw + 16 * i, 8);
    memcpy(end, raw + 16 * i + 8, 8);
}

/* index(data, start, end, numbers) */
static PyObject *wire_index(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    Py_ssize_t start, end;
    PyObject *numbers_arg;
    if (!PyArg_ParseTuple(args, "y*nnO!:index", &data, &start, &end, &PyTuple_Type, &numbers_arg)) {
        return NULL;
    }
    uint32_t numbers[MAX_NUMBERS];
    Py_ssize_t n_numbers = 0;
    Grow found[MAX_NUMBERS] = {{0}};
    PyObject *result = NULL;
    if (parse_numbers(numbers_arg, numbers, &n_numbers, "numbers") < 0) {
        goto done;
    }
    if (start < 0 || start > end || end > data.len) {
        PyErr_Format(WireError, "[%zd, %zd) is not inside the %zd bytes of data", start, end, data.len);
        goto done;
    }
    const Ctx c = {(const uint8_t *)data.buf};
    const uint8_t *p = c.base + start, *stop = c.base + end;
    while (p < stop) {
        const uint8_t *at = p;
        uint32_t number;
        int wire;
        if (read_tag(&c, &p, stop, &number, &wire) < 0) {
            goto done;
        }
        Py_ssize_t k = find_number(numbers, n_numbers, number);
        if (k < 0) {
            if (skip_field(&c, at, &p, stop, wire) < 0) {
                goto done;
            }
            continue;
        }
        const uint8_t *body, *body_end;
        if (wire != 2) {
            wrong_wire(&c, at, number, wire, "2 (length-delimited)");
            goto done;
        }
        if (read_body(&c, &p, stop, &body, &body_end) < 0 || grow_push(&found[k], (uint64_t)(body - c.base)) < 0 ||
            grow_push(&found[k], (uint64_t)(body_end - c.base)) < 0) {
            goto done;
        }
    }
    result = PyTuple_New(n_numbers);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_numbers; k++) {
        PyObject *array = grow_finish(&found[k]);
        if (array == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(result, k, array);
    }
done:
    for (Py_ssize_t k = 0; k < MAX_NUMBERS; k++) {
        grow_free(&found[k]);
    }
    PyBuffer_Release(&data);
    return result;
}

/* The values of repeated_varints are decoded into these arrays, kept from call to call (up to
 * SCRATCH_KEEP items, 2 MiB, each), then copied into arrays of their exact size: fresh memory costs a
 * page fault per 4 KiB written, more than the copy (one pass and a copy: 0.82 ms for a large profile's
 * samples, against 1.09 ms for a counting pass and a second one into exact arrays). `scratch_busy` guards
 * against a nested call (the allocation of the results may run a finalizer): that one decodes into
 * arrays of its own. */
#define SCRATCH_KEEP (1 << 18)
static Grow scratch[MAX_NUMBERS];
static int scratch_busy;

/* The one pass of repeated_varints over every span: checks the messages, counts each number's values per
 * span into `counts` and appends them to `values`. */
static int walk_repeated(const Ctx *c, const Spans *spans, const uint32_t *numbers, Py_ssize_t n_numbers,
                         const uint32_t *messages, Py_ssize_t n_messages, int64_t **counts, Grow *values) {
    for (Py_ssize_t i = 0; i < spans->n; i++) {
        int64_t start, end;
        span_at(spans, i, &start, &end);
        const uint8_t *p = c->base + start, *stop = c->base + end;
        while (p < stop) {
            const uint8_t *at = p;
            uint32_t number;
            int wire;
            const uint8_t *body, *body_end;
            uint64_t v;
            if (read_tag(c, &p, stop, &number, &wire) < 0) {
                return -1;
            }
            Py_ssize_t k = find_number(numbers, n_numbers, number);
            if (k >= 0 && wire == 0) {
                if (read_varint(c, &p, stop, &v) < 0 || grow_push(&values[k], v) < 0) {
                    return -1;
                }
                counts[k][i]++;
            } else if (k >= 0 && wire == 2) { /* a packed run: whole varints filling the body */
                /* (at most one value per byte: room for that many, so the loop checks no capacity) */
                if (read_body(c, &p, stop, &body, &body_end) < 0 || grow_reserve(&values[k], body_end - body) < 0) {
                    return -1;
                }
                const uint8_t *bad = NULL;
                uint64_t *first = values[k].items + values[k].len;
                uint64_t *out = decode_packed(body, body_end, first, &bad);
                if (bad != NULL) {
                    read_varint(c, &bad, body_end, &v); /* (fails again, saying how) */
                    return -1;
                }
                values[k].len += out - first;
                counts[k][i] += out - first;
            } else if (k >= 0) {
                wrong_wire(c, at, number, wire, "0 or 2 (a varint or a packed run)");
                return -1;
            } else if (find_number(messages, n_messages, number) >= 0) {
                if (wire != 2) {
                    wrong_wire(c, at, number, wire, "2 (a message)");
                    return -1;
                }
                if (read_body(c, &p, stop, &body, &body_end) < 0 || check_fields(c, body, body_end) < 0) {
                    return -1;
                }
            } else if (skip_field(c, at, &p, stop, wire) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* repeated_varints(data, spans, numbers, messages) */
static PyObject *wire_repeated_varints(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    PyObject *spans_arg, *numbers_arg, *messages_arg;
    if (!PyArg_ParseTuple(args, "y*OO!O!:repeated_varints", &data, &spans_arg, &PyTuple_Type, &numbers_arg,
                          &PyTuple_Type, &messages_arg)) {
        return NULL;
    }
    uint32_t numbers[MAX_NUMBERS], messages[MAX_NUMBERS];
    Py_ssize_t n_numbers = 0, n_messages = 0;
    PyObject *counts[MAX_NUMBERS] = {NULL};
    int64_t *count_of[MAX_NUMBERS] = {NULL};
    Grow own[MAX_NUMBERS] = {{0}};
    int nested = scratch_busy;
    Grow *values = nested ? own : scratch;
    PyObject *result = NULL;
    Spans spans;
    int have_spans = 0;
    const Ctx c = {(const uint8_t *)data.buf};
    scratch_busy = 1;
    for (Py_ssize_t k = 0; k < MAX_NUMBERS; k++) {
        values[k].len = 0;
    }
    if (parse_numbers(numbers_arg, numbers, &n_numbers, "numbers") < 0 ||
        parse_numbers(messages_arg, messages, &n_messages, "messages") < 0) {
        goto done;
    }
    if (get_spans(spans_arg, data.len, &spans) < 0) {
        goto done;
    }
    have_spans = 1;
    for (Py_ssize_t k = 0; k < n_numbers; k++) {
        counts[k] = PyByteArray_FromStringAndSize(NULL, spans.n * 8);
        if (counts[k] == NULL) {
            goto done;
        }
        count_of[k] = (int64_t *)PyByteArray_AS_STRING(counts[k]);
        memset(count_of[k], 0, (size_t)spans.n * 8);
    }
    if (walk_repeated(&c, &spans, numbers, n_numbers, messages, n_messages, count_of, values) < 0) {
        goto done;
    }
    result = PyTuple_New(n_numbers);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t k = 0; k < n_numbers; k++) {
        PyObject *array = PyByteArray_FromStringAndSize((const char *)values[k].items, values[k].len * 8);
        PyObject *pair = array == NULL ? NULL : PyTuple_Pack(2, array, counts[k]);
        Py_XDECREF(array);
        if (pair == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(result, k, pair);
    }
done:
    for (Py_ssize_t k = 0; k < MAX_NUMBERS; k++) {
        Py_XDECREF(counts[k]);
        if (nested || values[k].cap > SCRATCH_KEEP) {
            grow_free(&values[k]);
            values[k].len = values[k].cap = 0;
        }
    }
    if (!nested) {
        scratch_busy = 0;
    }
    if (have_spans) {
        PyBuffer_Release(&spans.view);
    }
    PyBuffer_Release(&data);
    return result;
}

/* table(data, spans, width, nested) */
static PyObject *wire_table(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    PyObject *spans_arg;
    Py_ssize_t width, nested_arg;
    if (!PyArg_ParseTuple(args, "y*Onn:table", &data, &spans_arg, &width, &nested_arg)) {
        return NULL;
    }
    PyObject *columns = NULL, *result = NULL;
    Grow nested = {0};
    Spans spans;
    int have_spans = 0;
    if (width < 1 || width > MAX_WIDTH) {
        PyErr_Format(PyExc_ValueError, "width must be 1..%d", MAX_WIDTH);
        goto done;
    }
    if (nested_arg < 0 || nested_arg > 0x1FFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "nested must be a field number (0: none)");
        goto done;
    }
    if (get_spans(spans_arg, data.len, &spans) < 0) {
        goto done;
    }
    have_spans = 1;
    if (spans.n > PY_SSIZE_T_MAX / 8 / width) {
        PyErr_NoMemory();
        goto done;
    }
    columns = PyByteArray_FromStringAndSize(NULL, spans.n * width * 8);
    if (columns == NULL) {
        goto done;
    }
    uint64_t *cells = (uint64_t *)PyByteArray_AS_STRING(columns);
    memset(cells, 0, (size_t)(spans.n * width * 8));
    const Ctx c = {(const uint8_t *)data.buf};
    for (Py_ssize_t i = 0; i < spans.n; i++) {
        int64_t start, end;
        span_at(&spans, i, &start, &end);
        const uint8_t *p = c.base + start, *stop = c.base + end;
        uint64_t *row = cells + i * width;
        while (p < stop) {
            const uint8_t *at = p;
            uint32_t number;
            int wire;
            uint64_t v;
            const uint8_t *body, *body_end;
            if (read_tag(&c, &p, stop, &number, &wire) < 0) {
                goto done;
            }
            if (wire == 0) {
                if (read_varint(&c, &p, stop, &v) < 0) {
                    goto done;
                }
                if (number < (uint32_t)width) {
                    row[number] = v;
                }
            } else if (wire == 2 && number == (uint32_t)nested_arg) {
                if (read_body(&c, &p, stop, &body, &body_end) < 0 || grow_push(&nested, (uint64_t)i) < 0 ||
                    grow_push(&nested, (uint64_t)(body - c.base)) < 0 ||
                    grow_push(&nested, (uint64_t)(body_end - c.base)) < 0) {
                    goto done;
                }
            } else {
                wrong_wire(&c, at, number, wire, "0 (a varint)");
                goto done;
            }
        }
    }
    {
        PyObject *triples = grow_finish(&nested);
        if (triples != NULL) {
            result = PyTuple_Pack(2, columns, triples);
            Py_DECREF(triples);
        }
    }
done:
    Py_XDECREF(columns);
    grow_free(&nested);
    if (have_spans) {
        PyBuffer_Release(&spans.view);
    }
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef wire_methods[] = {
    {"index", wire_index, METH_VARARGS,
     "index(data, start, end, numbers) -> tuple of bytearray: (body start, body end) int64 pairs of the "
     "length-delimited fields with each number among the fields of the message data[start:end]."},
    {"repeated_varints", wire_repeated_varints, METH_VARARGS,
     "repeated_varints(data, spans, numbers, messages) -> tuple of (values, counts): each number's repeated "
     "varint field (packed or not) of each message span, as uint64 values and an int64 count per message."},
    {"table", wire_table, METH_VARARGS,
     "table(data, spans, width, nested) -> (columns, nested spans): varint fields 1..width-1 of each "
     "message as an (n, width) uint64 table, and its `nested` fields as (row, start, end) int64 triples."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT,
    "_wire",
    "A bounded reader of protobuf wire data for the vectorised pprof reader (see _wire.c).",
    -1,
    wire_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__wire(void) {
    PyObject *module = PyModule_Create(&wire_module);
    if (module == NULL) {
        return NULL;
    }
    WireError = PyErr_NewExceptionWithDoc("otel_leakproc.receiver.decode._wire.WireError",
                                          "Malformed protobuf wire data (the message names the byte offset).",
                                          PyExc_ValueError, NULL);
    if (WireError == NULL || PyModule_AddObjectRef(module, "WireError", WireError) < 0) {
        Py_XDECREF(WireError);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
