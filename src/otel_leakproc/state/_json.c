/* _json: the JSON text of a checkpoint's plain data (records.py: the report in its head and the rest of the
 * state), as `json.dumps(value, separators=(",", ":"))` writes it, byte for byte, straight into one bytes
 * object.
 *
 * The standard library's C encoder makes a str object of every key, separator and number, and joins them
 * at the end: for a checkpoint's few kilobytes of JSON, that is most of its time. Here the text is written
 * into one growing buffer; numbers are formatted as Python formats them (an int as its decimal digits, a float
 * as `repr` does, NaN and the infinities as `json` does); strings are escaped as `json` escapes them with
 * `ensure_ascii` (", \, \n, \r, \t, \b and \f by name, other characters below 0x20 and all from 0x7f on as
 * \uXXXX in lowercase hex, those past 0xFFFF as a surrogate pair).
 *
 *   dumps(value) -> bytes | None
 *       The ASCII text of `value`, of dicts with str keys, lists, tuples, str, int, float, bool and None,
 *       nested (exact types only: a subclass may format itself otherwise). None when `value` holds anything
 *       else or nests deeper than MAX_DEPTH: the caller then uses `json` itself (which also raises what it
 *       raises for what it cannot encode).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 100

typedef struct {
    char *data;
    size_t len, cap;
} Text;

/* Room for `more` bytes; -1 (MemoryError set) when there is none. */
static int reserve(Text *t, size_t more) {
    if (t->len + more <= t->cap) {
        return 0;
    }
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + more) {
        cap *= 2;
    }
    char *data = PyMem_Realloc(t->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->data = data;
    t->cap = cap;
    return 0;
}

static int put(Text *t, const char *s, size_t n) {
    if (reserve(t, n) < 0) {
        return -1;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

static int put_escape_u(Text *t, unsigned int c) {
    char u[6] = {'\\', 'u', HEX[(c >> 12) & 15], HEX[(c >> 8) & 15], HEX[(c >> 4) & 15], HEX[c & 15]};
    return put(t, u, 6);
}

/* A str, quoted and escaped as `json`'s `ensure_ascii` escapes it. */
static int put_string(Text *t, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s)) { /* the usual case: copy the runs that need no escape whole */
        const char *c = (const char *)PyUnicode_DATA(s);
        if (reserve(t, (size_t)n + 2) < 0) {
            return -1;
        }
        t->data[t->len++] = '"';
        Py_ssize_t from = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)c[i];
            if (ch >= ' ' && ch < 0x7f && ch != '"' && ch != '\\') {
                continue;
            }
            if (put(t, c + from, (size_t)(i - from)) < 0) {
                return -1;
            }
            from = i + 1;
            char named = ch == '"' ? '"' : ch == '\\' ? '\\' : ch == '\n' ? 'n' : ch == '\r' ? 'r' : ch == '\t' ? 't'
                       : ch == '\b' ? 'b' : ch == '\f' ? 'f' : 0;
            if (named) {
                char e[2] = {'\\', named};
                if (put(t, e, 2) < 0) {
                    return -1;
                }
            } else if (put_escape_u(t, ch) < 0) {
                return -1;
            }
        }
        if (put(t, c + from, (size_t)(n - from)) < 0 || put(t, "\"", 1) < 0) {
            return -1;
        }
        return 0;
    }
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    if (put(t, "\"", 1) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        int fail;
        if (ch >= ' ' && ch < 0x7f && ch != '"' && ch != '\\') {
            char one = (char)ch;
            fail = put(t, &one, 1);
        } else if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\b' || ch == '\f') {
            char e[2] = {'\\', ch == '"' ? '"' : ch == '\\' ? '\\' : ch == '\n' ? 'n' : ch == '\r' ? 'r'
                              : ch == '\t' ? 't' : ch == '\b' ? 'b' : 'f'};
            fail = put(t, e, 2);
        } else if (ch >= 0x10000) {
            Py_UCS4 v = ch - 0x10000;
            fail = put_escape_u(t, 0xd800 | ((v >> 10) & 0x3ff)) < 0 || put_escape_u(t, 0xdc00 | (v & 0x3ff)) < 0;
        } else {
            fail = put_escape_u(t, ch);
        }
        if (fail) {
            return -1;
        }
    }
    return put(t, "\"", 1);
}

/* An int's decimal digits (those past int64: as its repr gives them). */
static int put_int(Text *t, PyObject *v) {
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (x == -1 && PyErr_Occurred()) {
            return -1;
        }
        char buf[24];
        char *end = buf + sizeof buf, *at = end;
        unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
        do {
            *--at = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (x < 0) {
            *--at = '-';
        }
        return put(t, at, (size_t)(end - at));
    }
    PyObject *text = PyLong_Type.tp_repr(v);
    if (text == NULL) {
        return -1;
    }
    Py_ssize_t n;
    const char *c = PyUnicode_AsUTF8AndSize(text, &n);
    int result = c == NULL ? -1 : put(t, c, (size_t)n);
    Py_DECREF(text);
    return result;
}

static int put_float(Text *t, double x) {
    if (!isfinite(x)) {
        const char *s = x > 0 ? "Infinity" : x < 0 ? "-Infinity" : "NaN";
        return put(t, s, strlen(s));
    }
    char *s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL); /* float's repr */
    if (s == NULL) {
        return -1;
    }
    int result = put(t, s, strlen(s));
    PyMem_Free(s);
    return result;
}

/* 0: written; 1: a value this does not write (nothing to raise); -1: an error raised. */
static int put_value(Text *t, PyObject *v, int depth) {
    if (v == Py_None) {
        return put(t, "null", 4);
    }
    if (v == Py_True) {
        return put(t, "true", 4);
    }
    if (v == Py_False) {
        return put(t, "false", 5);
    }
    if (PyUnicode_CheckExact(v)) {
        return put_string(t, v);
    }
    if (PyLong_CheckExact(v)) {
        return put_int(t, v);
    }
    if (PyFloat_CheckExact(v)) {
        return put_float(t, PyFloat_AS_DOUBLE(v));
    }
    if (depth >= MAX_DEPTH) {
        return 1;
    }
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        if (put(t, "[", 1) < 0) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i && put(t, ",", 1) < 0) {
                return -1;
            }
            PyObject *item = PySequence_Fast_GET_ITEM(v, i);
            Py_INCREF(item); /* (a list item stays alive while it is written) */
            int r = put_value(t, item, depth + 1);
            Py_DECREF(item);
            if (r) {
                return r;
            }
        }
        return put(t, "]", 1);
    }
    if (PyDict_CheckExact(v)) {
        if (put(t, "{", 1) < 0) {
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        int first = 1;
        while (PyDict_Next(v, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key)) {
                return 1;
            }
            if ((!first && put(t, ",", 1) < 0) || put_string(t, key) < 0 || put(t, ":", 1) < 0) {
                return -1;
            }
            first = 0;
            Py_INCREF(item);
            int r = put_value(t, item, depth + 1);
            Py_DECREF(item);
            if (r) {
                return r;
            }
        }
        return put(t, "}", 1);
    }
    return 1;
}

static PyObject *dumps(PyObject *self, PyObject *value) {
    (void)self;
    Text t = {NULL, 0, 0};
    int r = put_value(&t, value, 0);
    PyObject *result = NULL;
    if (r == 0) {
        result = PyBytes_FromStringAndSize(t.data, (Py_ssize_t)t.len);
    } else if (r == 1) {
        result = Py_NewRef(Py_None);
    }
    PyMem_Free(t.data);
    return result;
}

static PyMethodDef methods[] = {
    {"dumps", dumps, METH_O, "The compact JSON text of plain data, as json.dumps writes it, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_json", "The JSON text of a checkpoint's plain data.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__json(void) { return PyModule_Create(&module); }
