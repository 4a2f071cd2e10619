/* CPU kernels of heatmapnet: loops over keypoints that vectorised PyTorch can only run as many
 * small operations. Where this module is not built, heatmapnet takes its PyTorch paths, which
 * give the same values (tests check both).
 *
 * max_gaussians (heatmapnet.targets): each point's truncated Gaussian max-combined into its map.
 *
 * blurred_dark_points (heatmapnet.decode): DARK refinement after DARK's Gaussian blur, fused
 * per peak. For each map and the flat index of its peak, the blur (separable, replicate
 * borders) is evaluated only on the 3x3 patch around the peak, from the (2r + 3)^2 pixels it
 * reads; then the offset of decode._dark_offsets: -H^-1 g of the log patch with the
 * eight-neighbour curvature of decode._log_stencils, kept where H is negative definite; for a
 * peak on the map's border, a 1-D Newton step on each axis with room (none on an axis without);
 * clamped to one pixel. A peak whose value is <= 0, or whose blurred patch has an in-map value at
 * or below the log floor, is flagged for the caller, which blurs that map whole: there the
 * rescaling to the original maximum matters.
 *
 * top_peaks (heatmapnet.bottomup): per map, in one pass, the k best peaks: pixels >= each of
 * their (up to) eight neighbours -- equal to the 3x3 max-pool with -inf padding, plateaus
 * included -- whose value is >= a threshold and > -inf, best first (value descending; equal
 * values: the lower flat index first), padded with -inf and index -1. The scan skips a run of
 * pixels all below the bar (the threshold, then the k-th best value once k peaks are held) after
 * one vectorised comparison, which makes sparse maps cost one read.
 *
 * Each entry point checks all its arguments before it writes anything, and raises ValueError
 * (TypeError for an object that is no contiguous buffer) naming the argument: a buffer whose
 * items are not of the type it must hold (its struct format and item size are read, so a float64
 * buffer of the right byte length is refused, not read as float32), sizes whose products would
 * overflow, a buffer of the wrong size, an index (channel, peak) outside its range.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static Py_ssize_t clamp_index(Py_ssize_t value, Py_ssize_t size)
{
    return value < 0 ? 0 : (value >= size ? size - 1 : value);
}

#define CHUNK 16 /* columns blurred together: a row's sums stay in vector registers */

/* Per-call buffers of blurred_patch, for a blur of radius r: padded = 2r + 3 rounded up to CHUNK. */
typedef struct {
    int padded;
    float *by_rows;       /* 3 x padded: the patch's three rows blurred along columns */
    float *line_copies;   /* (2r + 3) x CHUNK: lines with their columns clamped at a border */
    const float **lines;  /* 2r + 3: where each line's chunk is read from */
} Workspace;

/* The blurred 3x3 patch centred on (px, py), from the 2r + 3 lines around it: the three rows
 * first, over the columns CHUNK at a time, then the three columns. The kernel is symmetric, so
 * lines (and then columns) at equal distances from the centre are added before one product. */
static void blurred_patch(const float *restrict map, Py_ssize_t height, Py_ssize_t width, Py_ssize_t px,
                          Py_ssize_t py, const float *restrict kernel, int radius, Workspace *work,
                          float patch[3][3])
{
    const int span = 2 * radius + 3, padded = work->padded;
    const Py_ssize_t first_column = px - 1 - radius, first_row = py - 1 - radius;
    const int columns_inside = first_column >= 0 && first_column + padded <= width;
    const float **lines = work->lines;

    for (int chunk = 0; chunk < padded; chunk += CHUNK) {
        for (int t = 0; t < span; t++) {
            const float *line = map + clamp_index(first_row + t, height) * width;
            if (columns_inside) {
                lines[t] = line + first_column + chunk;
            } else {
                float *copy = work->line_copies + t * CHUNK;
                for (int c = 0; c < CHUNK; c++)
                    copy[c] = line[clamp_index(first_column + chunk + c, width)];
                lines[t] = copy;
            }
        }
        for (int i = 0; i < 3; i++) {  /* row i of the patch is centred on line i + r */
            float sums[CHUNK];
            const float *restrict middle = lines[i + radius];
            for (int c = 0; c < CHUNK; c++)
                sums[c] = kernel[radius] * middle[c];
            for (int tap = 0; tap < radius; tap++) {
                const float *restrict above = lines[i + tap], *restrict below = lines[i + 2 * radius - tap];
                for (int c = 0; c < CHUNK; c++)
                    sums[c] += kernel[tap] * (above[c] + below[c]);
            }
            for (int c = 0; c < CHUNK; c++)
                work->by_rows[i * padded + chunk + c] = sums[c];
        }
    }
    for (int i = 0; i < 3; i++) {  /* columns, four sums at a time (the fourth unused; padded > span) */
        const float *row = work->by_rows + i * padded;
        float sums[4];
        for (int j = 0; j < 4; j++)
            sums[j] = kernel[radius] * row[radius + j];
        for (int tap = 0; tap < radius; tap++)
            for (int j = 0; j < 4; j++)
                sums[j] += kernel[tap] * (row[tap + j] + row[2 * radius - tap + j]);
        for (int j = 0; j < 3; j++)
            patch[i][j] = sums[j];
    }
}

/* Asks for the lines the blur around a peak will read, so that they arrive while the previous
 * peak is computed: the maps are far larger than the cache and each peak reads 2r + 3 lines. */
static void prefetch_window(const float *map, Py_ssize_t height, Py_ssize_t width, int64_t index, int radius)
{
    const Py_ssize_t px = index % width, py = index / width;
    const Py_ssize_t first_column = clamp_index(px - 1 - radius, width);
    const Py_ssize_t last_column = clamp_index(px + 1 + radius, width);
    for (int t = 0; t < 2 * radius + 3; t++) {
        const float *line = map + clamp_index(py - 1 - radius + t, height) * width;
        __builtin_prefetch(line + first_column);
        __builtin_prefetch(line + last_column);
    }
}

static float clamp_unit(float value)
{
    return value < -1.0f ? -1.0f : (value > 1.0f ? 1.0f : value);
}

/* -H^-1 g from a log patch, the curvature from the eight neighbours (exact for a Gaussian);
 * offset is left as it is where H is not negative definite. */
static void taylor_offset(const float log_patch[3][3], float *offset)
{
    const float corners = log_patch[0][0] + log_patch[0][2] + log_patch[2][0] + log_patch[2][2];
    const float gx = 0.5f * (log_patch[1][2] - log_patch[1][0]);
    const float gy = 0.5f * (log_patch[2][1] - log_patch[0][1]);
    const float dxx = 0.5f * corners - (log_patch[0][1] + log_patch[2][1]);
    const float dyy = 0.5f * corners - (log_patch[1][0] + log_patch[1][2]);
    const float dxy = 0.25f * (log_patch[0][0] - log_patch[0][2] - log_patch[2][0] + log_patch[2][2]);
    const float det = dxx * dyy - dxy * dxy;
    if (dxx < 0.0f && det > 0.0f) {
        const float ox = (dxy * gy - dyy * gx) / det, oy = (dxy * gx - dxx * gy) / det;
        offset[0] = clamp_unit(ox);
        offset[1] = clamp_unit(oy);
    }
}

/* The 1-D Newton step -g/h from three log values along a line through the peak; 0 where h >= 0. */
static float newton_step(float before, float centre, float after)
{
    const float g = 0.5f * (after - before), h = before - 2.0f * centre + after;
    return h < 0.0f ? clamp_unit(-g / h) : 0.0f;
}

static void free_workspace(Workspace *work)
{
    free(work->by_rows);
    free(work->line_copies);
    free(work->lines);
}

/* Checks that a buffer holds exactly `items` items of item_size bytes; else ValueError naming it. */
static int check_buffer(const Py_buffer *buffer, Py_ssize_t items, Py_ssize_t item_size, const char *name)
{
    if (buffer->len / item_size != items || buffer->len % item_size != 0) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes, got %zd bytes", name, items,
                     item_size, buffer->len);
        return 0;
    }
    return 1;
}

/* a * b into *product (a, b >= 0); 0, with nothing written, where it would overflow Py_ssize_t. */
static int multiply_sizes(Py_ssize_t a, Py_ssize_t b, Py_ssize_t *product)
{
    if (b != 0 && a > PY_SSIZE_T_MAX / b)
        return 0;
    *product = a * b;
    return 1;
}

/* The items a kernel argument must hold, as the buffer protocol's struct codes name them. */
typedef struct {
    const char *name;   /* for messages */
    const char *codes;  /* the codes accepted (with a native byte order) */
    Py_ssize_t size;    /* bytes per item */
} ItemType;

static const ItemType FLOAT32 = {"float32", "f", 4};
static const ItemType INT64 = {"int64", "lq", 8};
static const ItemType BYTES = {"bool or uint8", "?B", 1};

/* Whether the buffer's items are of `type`: one struct code of type->codes, after an optional
 * native byte-order prefix, and type->size bytes each. A float64 buffer of the right byte length
 * is thereby refused, not read as twice as many float32 values. */
static int has_item_type(const Py_buffer *view, const ItemType *type)
{
    const char *format = view->format != NULL ? view->format : "B";  /* NULL: unsigned bytes */
#if PY_LITTLE_ENDIAN
    const char native = '<';
#else
    const char native = '>';
#endif
    if (*format == '@' || *format == '=' || *format == native || (native == '>' && *format == '!'))
        format++;
    return format[0] != '\0' && format[1] == '\0' && strchr(type->codes, format[0]) != NULL &&
           view->itemsize == type->size;
}

#define ANY_ITEMS (-1)

/* Gets the buffer of the kernel argument `name` into *view: C-contiguous, of items of `type`,
 * writable where asked, and (items != ANY_ITEMS) holding exactly `items` of them. Returns the
 * number of items it holds, or -1 with an exception set and nothing held: the exporter's own for
 * a read-only argument that has no such buffer, a TypeError naming the argument for a writable
 * one or one that is not contiguous, a ValueError naming it for other items (the format and item
 * size it has) or a wrong count. *view must start empty ({NULL}), as the entry points' buffers
 * do, so that release_buffers can release it either way. */
static Py_ssize_t get_buffer(PyObject *object, Py_buffer *view, int writable, Py_ssize_t items, const ItemType *type,
                             const char *name)
{
    if (PyObject_GetBuffer(object, view, PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE)) < 0) {
        view->obj = NULL;  /* nothing held */
        if (writable) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s: must be a read-write bytes-like object, not %.50s", name,
                         Py_TYPE(object)->tp_name);
        }
        return -1;
    }
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s: must be a contiguous buffer, not %.50s", name, Py_TYPE(object)->tp_name);
        return -1;
    }
    if (!has_item_type(view, type)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %s items, got format '%.20s' of %zd bytes each", name,
                     type->name, view->format != NULL ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    if (items != ANY_ITEMS && !check_buffer(view, items, type->size, name)) {
        PyBuffer_Release(view);
        return -1;
    }
    return view->len / type->size;
}

/* The end of an entry point: releases its buffers (those never acquired are empty) and returns
 * None, or NULL where it failed with an exception set. */
static PyObject *release_buffers(Py_buffer *buffers, int count)
{
    for (int i = 0; i < count; i++)
        PyBuffer_Release(&buffers[i]);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *blurred_dark_points(PyObject *self, PyObject *args)
{
    PyObject *maps_in, *peaks_in, *kernel_in, *points_in, *fallback_in;
    Py_ssize_t height, width;
    float log_floor;
    if (!PyArg_ParseTuple(args, "OnnOOfOO", &maps_in, &height, &width, &peaks_in, &kernel_in, &log_floor,
                          &points_in, &fallback_in))
        return NULL;
    Py_buffer held[5] = {{NULL}};
    Py_buffer *maps = &held[0], *peak_index = &held[1], *kernel = &held[2], *points = &held[3], *fallback = &held[4];
    Py_ssize_t count = -1, taps = -1, map_size, all_values;
    if (height < 1 || width < 1) {
        PyErr_Format(PyExc_ValueError, "height and width must be >= 1, got %zd x %zd", height, width);
        goto done;
    }
    if (get_buffer(maps_in, maps, 0, ANY_ITEMS, &FLOAT32, "maps") < 0 ||
        (count = get_buffer(peaks_in, peak_index, 0, ANY_ITEMS, &INT64, "peak_index")) < 0 ||
        (taps = get_buffer(kernel_in, kernel, 0, ANY_ITEMS, &FLOAT32, "kernel")) < 0)
        goto done;
    if (taps % 2 != 1 || taps > INT_MAX / 2) {
        PyErr_Format(PyExc_ValueError, "kernel: its length must be odd and below %d, got %zd", INT_MAX / 2, taps);
        goto done;
    }
    if (!multiply_sizes(height, width, &map_size) || !multiply_sizes(map_size, count, &all_values)) {
        PyErr_Format(PyExc_ValueError, "maps: %zd maps of %zd x %zd are more values than memory can address", count,
                     height, width);
        goto done;
    }
    if (!check_buffer(maps, all_values, sizeof(float), "maps") ||
        get_buffer(points_in, points, 1, 2 * count, &FLOAT32, "points") < 0 ||
        get_buffer(fallback_in, fallback, 1, count, &BYTES, "fallback") < 0)
        goto done;
    const int radius = (int)(taps / 2);
    const float *weights = kernel->buf;
    for (int tap = 0; tap < taps; tap++)
        if (!isfinite(weights[tap]) || weights[tap] != weights[taps - 1 - tap]) {
            PyErr_SetString(PyExc_ValueError, "kernel: must be finite and symmetric");
            goto done;
        }
    const int64_t *peaks = peak_index->buf;
    for (Py_ssize_t n = 0; n < count; n++)  /* every peak checked before anything is written */
        if (peaks[n] < 0 || peaks[n] >= map_size) {
            PyErr_Format(PyExc_ValueError, "peak_index[%zd] lies outside its %zd x %zd map (it is %lld)", n, height,
                         width, (long long)peaks[n]);
            goto done;
        }
    const int span = 2 * radius + 3;
    Workspace work = {(span + CHUNK - 1) / CHUNK * CHUNK, NULL, NULL, NULL};  /* span is odd: padded > span */
    work.by_rows = malloc(sizeof(float) * 3 * work.padded);
    work.line_copies = malloc(sizeof(float) * span * CHUNK);
    work.lines = malloc(sizeof(const float *) * span);
    if (work.by_rows == NULL || work.line_copies == NULL || work.lines == NULL) {
        free_workspace(&work);
        PyErr_NoMemory();
        goto done;
    }
    const float *all_maps = maps->buf;
    float *out = points->buf;
    uint8_t *flags = fallback->buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t n = 0; n < count; n++) {
        const float *map = all_maps + n * map_size;
        const int64_t index = peaks[n];
        if (n + 1 < count)
            prefetch_window(map + map_size, height, width, peaks[n + 1], radius);
        const Py_ssize_t px = index % width, py = index / width;
        float patch[3][3], offset[2] = {0.0f, 0.0f};
        blurred_patch(map, height, width, px, py, weights, radius, &work, patch);
        const int room_x = px >= 1 && px <= width - 2, room_y = py >= 1 && py <= height - 2;
        int usable = map[index] > 0.0f;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {  /* the patch's off-map values are not used */
                const Py_ssize_t row = py - 1 + i, column = px - 1 + j;
                const int in_map = row >= 0 && row < height && column >= 0 && column < width;
                usable &= !in_map || patch[i][j] > log_floor;
                patch[i][j] = in_map ? logf(patch[i][j]) : 0.0f;
            }
        flags[n] = !usable;
        if (usable && room_x && room_y)
            taylor_offset(patch, offset);
        else if (usable) {
            if (room_x)
                offset[0] = newton_step(patch[1][0], patch[1][1], patch[1][2]);
            if (room_y)
                offset[1] = newton_step(patch[0][1], patch[1][1], patch[2][1]);
        }
        out[2 * n] = (float)px + offset[0];
        out[2 * n + 1] = (float)py + offset[1];
    }
    Py_END_ALLOW_THREADS
    free_workspace(&work);
done:
    return release_buffers(held, 5);
}

/* The sigmas a Gaussian is drawn with, the rule of heatmapnet.targets.usable_sigmas: finite, > 0,
 * and a square that is a normal float32, so that -d^2 / (2 sigma^2) is never 0 / 0. */
static int usable_sigma(float sigma)
{
    return sigma > 0.0f && sigma <= FLT_MAX && sigma * sigma >= FLT_MIN;
}

static PyObject *max_gaussians(PyObject *self, PyObject *args)
{
    PyObject *maps_in, *points_in, *channels_in, *sigmas_in, *draw_in;
    Py_ssize_t height, width;
    float truncate_sigmas, value_at_truncation;
    int exact_peak;
    if (!PyArg_ParseTuple(args, "OnnOOOOffp", &maps_in, &height, &width, &points_in, &channels_in, &sigmas_in,
                          &draw_in, &truncate_sigmas, &value_at_truncation, &exact_peak))
        return NULL;
    Py_buffer held[5] = {{NULL}};
    Py_buffer *maps = &held[0], *points = &held[1], *channels = &held[2], *sigmas = &held[3], *draw = &held[4];
    Py_ssize_t values = -1, count = -1, map_size;
    if (height < 1 || width < 1 || !multiply_sizes(height, width, &map_size) || map_size > PY_SSIZE_T_MAX / 4) {
        PyErr_Format(PyExc_ValueError, "maps: height and width must be >= 1 and a map fit in memory, got %zd x %zd",
                     height, width);
        goto done;
    }
    if (!(isfinite(truncate_sigmas) && truncate_sigmas > 0.0f && value_at_truncation >= 0.0f &&
          value_at_truncation < 1.0f)) {
        PyErr_SetString(PyExc_ValueError, "truncate_sigmas must be finite and > 0, value_at_truncation in [0, 1)");
        goto done;
    }
    if ((values = get_buffer(maps_in, maps, 1, ANY_ITEMS, &FLOAT32, "maps")) < 0 ||
        (count = get_buffer(channels_in, channels, 0, ANY_ITEMS, &INT64, "channels")) < 0)
        goto done;
    if (values % map_size != 0) {
        PyErr_Format(PyExc_ValueError, "maps: %zd float32 values are no whole number of %zd x %zd maps", values,
                     height, width);
        goto done;
    }
    const Py_ssize_t num_maps = values / map_size;
    if (get_buffer(points_in, points, 0, 2 * count, &FLOAT32, "points") < 0 ||
        get_buffer(sigmas_in, sigmas, 0, count, &FLOAT32, "sigmas") < 0 ||
        get_buffer(draw_in, draw, 0, count, &BYTES, "draw") < 0)
        goto done;
    float *all_maps = maps->buf;
    const float *xy = points->buf, *sigma_of = sigmas->buf;
    const int64_t *channel_of = channels->buf;
    const uint8_t *drawn = draw->buf;
    for (Py_ssize_t n = 0; n < count; n++) {  /* every point checked before any is drawn */
        if (channel_of[n] < 0 || channel_of[n] >= num_maps) {
            PyErr_Format(PyExc_ValueError, "channels[%zd] must lie in [0, %zd), got %lld; nothing was drawn", n,
                         num_maps, (long long)channel_of[n]);
            goto done;
        }
        if (drawn[n] && !usable_sigma(sigma_of[n])) {
            char text[64];
            PyOS_snprintf(text, sizeof(text), "%g", (double)sigma_of[n]);
            PyErr_Format(PyExc_ValueError, "sigmas[%zd] is %s: a drawn Gaussian's sigma must be finite and > 0, "
                         "its square a normal float32 (sigma >= 1.1e-19); nothing was drawn", n, text);
            goto done;
        }
    }
    float *columns = malloc(sizeof(float) * width);  /* the Gaussian along x, per point */
    if (columns == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t n = 0; n < count; n++) {
        const float x = xy[2 * n], y = xy[2 * n + 1], sigma = sigma_of[n];
        const float centre_x = floorf(x + 0.5f), centre_y = floorf(y + 0.5f);
        if (!(drawn[n] && centre_x >= 0.0f && centre_x <= (float)(width - 1) &&
              centre_y >= 0.0f && centre_y <= (float)(height - 1)))
            continue;
        const float reach_float = ceilf(truncate_sigmas * sigma + 0.5f);
        const Py_ssize_t reach = reach_float < (float)(height + width) ? (Py_ssize_t)reach_float : height + width;
        const Py_ssize_t cx = (Py_ssize_t)centre_x, cy = (Py_ssize_t)centre_y;
        const Py_ssize_t left = clamp_index(cx - reach, width), right = clamp_index(cx + reach, width);
        const Py_ssize_t top = clamp_index(cy - reach, height), bottom = clamp_index(cy + reach, height);
        /* exp(-(dx^2 + dy^2) / 2 sigma^2) = exp(dx^2 / scale) exp(dy^2 / scale) */
        const float scale = -2.0f * (sigma * sigma);
        for (Py_ssize_t c = left; c <= right; c++) {
            const float dx = (float)c - x;
            columns[c - left] = expf(dx * dx / scale);
        }
        float *map = all_maps + channel_of[n] * map_size;
        for (Py_ssize_t r = top; r <= bottom; r++) {
            const float dy = (float)r - y, along_y = expf(dy * dy / scale);
            float *restrict line = map + r * width + left;
            const float *restrict along_x = columns;
            for (Py_ssize_t c = 0; c <= right - left; c++) {
                float value = along_y * along_x[c];
                value = value > value_at_truncation ? value : 0.0f;
                line[c] = line[c] > value ? line[c] : value;
            }
        }
        if (exact_peak)
            map[cy * width + cx] = 1.0f;
    }
    Py_END_ALLOW_THREADS
    free(columns);
done:
    return release_buffers(held, 5);
}

typedef struct {
    float value;
    int64_t index;
} Peak;

/* The order of top_peaks: a is worse than b where its value is lower, or equal and its index higher. */
static int worse_peak(Peak a, Peak b)
{
    return a.value < b.value || (a.value == b.value && a.index > b.index);
}

/* The held peaks are a heap with the worst at its root. */
static void sift_down(Peak *heap, Py_ssize_t size, Py_ssize_t i)
{
    const Peak item = heap[i];
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= size)
            break;
        if (child + 1 < size && worse_peak(heap[child + 1], heap[child]))
            child++;
        if (!worse_peak(heap[child], item))
            break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = item;
}

static void sift_up(Peak *heap, Py_ssize_t i)
{
    const Peak item = heap[i];
    while (i > 0) {
        const Py_ssize_t parent = (i - 1) / 2;
        if (!worse_peak(item, heap[parent]))
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = item;
}

/* Whether (x, y), of value v (not NaN), is >= each of its in-map neighbours (itself included). */
static int is_local_maximum(const float *map, Py_ssize_t height, Py_ssize_t width, Py_ssize_t x, Py_ssize_t y,
                            float v)
{
    const Py_ssize_t top = y > 0 ? y - 1 : y, bottom = y < height - 1 ? y + 1 : y;
    const Py_ssize_t left = x > 0 ? x - 1 : x, right = x < width - 1 ? x + 1 : x;
    for (Py_ssize_t r = top; r <= bottom; r++) {
        const float *line = map + r * width;
        for (Py_ssize_t c = left; c <= right; c++)
            if (!(v >= line[c]))  /* a NaN neighbour fails too, as in the max-pool */
                return 0;
    }
    return 1;
}

#define SCAN 16 /* pixels of a row tested at once */

#if defined(__SSE2__) && !defined(HEATMAPNET_SCALAR_SCAN)
#include <emmintrin.h>
#endif

/* Bit c (c < SCAN) set where p[c] >= bar and >= both its row neighbours p[c - 1], p[c + 1] (all in
 * the map); NaN fails every test. Most runs have no pixel at the bar: one comparison per pixel. */
static unsigned row_candidates(const float *p, float bar)
{
    unsigned bits = 0;
#if defined(__SSE2__) && !defined(HEATMAPNET_SCALAR_SCAN)
    const __m128 level = _mm_set1_ps(bar);
    const __m128 any = _mm_or_ps(_mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(p), level),
                                           _mm_cmpge_ps(_mm_loadu_ps(p + 4), level)),
                                 _mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(p + 8), level),
                                           _mm_cmpge_ps(_mm_loadu_ps(p + 12), level)));
    if (!_mm_movemask_ps(any))
        return 0;
    for (int i = 0; i < SCAN; i += 4) {
        const __m128 v = _mm_loadu_ps(p + i);
        const __m128 keep = _mm_and_ps(_mm_cmpge_ps(v, level), _mm_and_ps(_mm_cmpge_ps(v, _mm_loadu_ps(p + i - 1)),
                                                                          _mm_cmpge_ps(v, _mm_loadu_ps(p + i + 1))));
        bits |= (unsigned)_mm_movemask_ps(keep) << i;
    }
#else
    for (int c = 0; c < SCAN; c++)
        bits |= (unsigned)(p[c] >= bar && p[c] >= p[c - 1] && p[c] >= p[c + 1]) << c;
#endif
    return bits;
}

static int lowest_bit(unsigned bits)  /* bits != 0 */
{
#if defined(__GNUC__)
    return __builtin_ctz(bits);
#else
    int c = 0;
    while (!(bits & 1u)) {
        bits >>= 1;
        c++;
    }
    return c;
#endif
}

/* The peaks held while one map is scanned: heap[0:size], the worst at the root, and the bar below
 * which no pixel can enter (the threshold until `capacity` are held, then the worst held value). */
typedef struct {
    Peak *heap;
    Py_ssize_t size, capacity;
    float bar;
} Held;

/* Offers pixel (x, y) of the map: kept if it is a peak that beats the worst held one. */
static void offer(const float *map, Py_ssize_t height, Py_ssize_t width, Py_ssize_t x, Py_ssize_t y, Held *held)
{
    const float v = map[y * width + x];
    if (!(v >= held->bar))
        return;
    const Peak peak = {v, (int64_t)(y * width + x)};
    if ((held->size == held->capacity && !worse_peak(held->heap[0], peak)) ||
        !is_local_maximum(map, height, width, x, y, v))
        return;
    if (held->size < held->capacity) {
        held->heap[held->size] = peak;
        sift_up(held->heap, held->size++);
        if (held->size == held->capacity)
            held->bar = held->heap[0].value;
    } else {
        held->heap[0] = peak;
        sift_down(held->heap, held->size, 0);
        held->bar = held->heap[0].value;
    }
}

/* Offers the pixels x0 + c of row y whose bit c is set. */
static void offer_bits(const float *map, Py_ssize_t height, Py_ssize_t width, Py_ssize_t x0, Py_ssize_t y,
                       unsigned bits, Held *held)
{
    while (bits) {
        offer(map, height, width, x0 + lowest_bit(bits), y, held);
        bits &= bits - 1;
    }
}

/* One map's best `capacity` (>= 1) peaks >= threshold (a number >= -FLT_MAX, or NaN: none), into
 * heap[0:size], best first; returns size. A row's inner pixels go SCAN at a time through
 * row_candidates (the last run overlapping the one before), its two end pixels one by one. */
static Py_ssize_t map_peaks(const float *map, Py_ssize_t height, Py_ssize_t width, Py_ssize_t capacity,
                            float threshold, Peak *heap)
{
    Held held = {heap, 0, capacity, threshold};
    for (Py_ssize_t y = 0; y < height; y++) {
        const float *line = map + y * width;
        if (width < SCAN + 2) {
            for (Py_ssize_t x = 0; x < width; x++)
                offer(map, height, width, x, y, &held);
            continue;
        }
        offer(map, height, width, 0, y, &held);
        Py_ssize_t x = 1;
        for (; x + SCAN <= width - 1; x += SCAN)
            offer_bits(map, height, width, x, y, row_candidates(line + x, held.bar), &held);
        if (x < width - 1) {  /* the last inner pixels: a run ending at width - 2, without those done */
            const Py_ssize_t last = width - 1 - SCAN;
            offer_bits(map, height, width, last, y, row_candidates(line + last, held.bar) & ~((1u << (x - last)) - 1u),
                       &held);
        }
        offer(map, height, width, width - 1, y, &held);
    }
    for (Py_ssize_t n = held.size - 1; n > 0; n--) {  /* heap sort: the worst to the back, best first */
        const Peak last = heap[n];
        heap[n] = heap[0];
        heap[0] = last;
        sift_down(heap, n, 0);
    }
    return held.size;
}

static PyObject *top_peaks(PyObject *self, PyObject *args)
{
    PyObject *maps_in, *values_in, *indices_in;
    Py_ssize_t height, width, channels, first, count, k;
    float threshold;
    if (!PyArg_ParseTuple(args, "OnnnnnnfOO", &maps_in, &height, &width, &channels, &first, &count, &k, &threshold,
                          &values_in, &indices_in))
        return NULL;
    Py_buffer held[3] = {{NULL}};
    Py_buffer *maps = &held[0], *values = &held[1], *indices = &held[2];
    if (height < 1 || width < 1 || channels < 1) {
        PyErr_SetString(PyExc_ValueError, "height, width and channels must be >= 1");
        goto done;
    }
    if (first < 0 || count < 0 || first > channels - count) {
        PyErr_Format(PyExc_ValueError, "first, count: channels [%zd, %zd + %zd) must lie in [0, %zd)", first, first,
                     count, channels);
        goto done;
    }
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "k must be >= 0, got %zd", k);
        goto done;
    }
    Py_ssize_t map_size, item_size, item_bytes, floats = -1;
    if (!multiply_sizes(height, width, &map_size) || !multiply_sizes(map_size, channels, &item_size) ||
        !multiply_sizes(item_size, sizeof(float), &item_bytes)) {
        PyErr_Format(PyExc_ValueError, "maps: %zd channels of %zd x %zd are too many bytes", channels, height, width);
        goto done;
    }
    if ((floats = get_buffer(maps_in, maps, 0, ANY_ITEMS, &FLOAT32, "maps")) < 0)
        goto done;
    if (maps->len % item_bytes != 0) {
        PyErr_Format(PyExc_ValueError, "maps: %zd bytes are not whole float32 items of %zd channels of %zd x %zd",
                     maps->len, channels, height, width);
        goto done;
    }
    const Py_ssize_t batch = floats / item_size;
    Py_ssize_t outputs, output_bytes;
    if (!multiply_sizes(batch, count, &outputs) || !multiply_sizes(outputs, k, &outputs) ||
        !multiply_sizes(outputs, sizeof(int64_t), &output_bytes)) {
        PyErr_Format(PyExc_ValueError, "values, indices: %zd x %zd x %zd peaks are too many", batch, count, k);
        goto done;
    }
    if (get_buffer(values_in, values, 1, outputs, &FLOAT32, "values") < 0 ||
        get_buffer(indices_in, indices, 1, outputs, &INT64, "indices") < 0)
        goto done;
    const Py_ssize_t capacity = k < map_size ? k : map_size;  /* a map has at most map_size peaks */
    Peak *heap = malloc(sizeof(Peak) * (capacity > 0 ? capacity : 1));
    if (heap == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (threshold < -FLT_MAX)  /* -inf is no peak (the max-pool cannot tell it from a suppressed pixel) */
        threshold = -FLT_MAX;
    const float *all_maps = maps->buf;
    float *out_values = values->buf;
    int64_t *out_indices = indices->buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t b = 0; b < batch; b++)
        for (Py_ssize_t c = 0; c < count; c++) {
            const float *map = all_maps + b * item_size + (first + c) * map_size;
            const Py_ssize_t row = b * count + c;
            const Py_ssize_t found = capacity > 0 ? map_peaks(map, height, width, capacity, threshold, heap) : 0;
            float *row_values = out_values + row * k;
            int64_t *row_indices = out_indices + row * k;
            for (Py_ssize_t n = 0; n < found; n++) {
                row_values[n] = heap[n].value;
                row_indices[n] = heap[n].index;
            }
            for (Py_ssize_t n = found; n < k; n++) {
                row_values[n] = -INFINITY;
                row_indices[n] = -1;
            }
        }
    Py_END_ALLOW_THREADS
    free(heap);
done:
    return release_buffers(held, 3);
}

PyDoc_STRVAR(max_gaussians_doc,
"max_gaussians(maps, height, width, points, channels, sigmas, draw, truncate_sigmas,\n"
"              value_at_truncation, exact_peak)\n\n"
"maps: float32 (C, height, width) contiguous, written in place; points: float32 (N, 2) x, y;\n"
"channels: int64 (N,) in [0, C); sigmas: float32 (N,); draw: bool (N,). Each drawn point whose\n"
"nearest pixel lies in the map max-combines its Gaussian exp(-d^2 / 2 sigma^2), kept where above\n"
"value_at_truncation, into maps[channel] over the pixels within ceil(truncate_sigmas sigma + 0.5)\n"
"of that pixel, which exact_peak sets to 1. The arithmetic is heatmapnet.targets' in float32.\n"
"ValueError, before anything is drawn: a buffer of other items (a float64 one is not read as\n"
"float32) or size, sizes beyond memory, a channel outside [0, C), or a drawn point whose sigma is\n"
"not finite and > 0 with a normal float32 square (heatmapnet.targets.usable_sigmas).");

PyDoc_STRVAR(blurred_dark_points_doc,
"blurred_dark_points(maps, height, width, peak_index, kernel, log_floor, points, fallback)\n\n"
"maps: float32 (N, height, width) contiguous; peak_index: int64 (N,) flat index of each peak;\n"
"kernel: float32 odd-length symmetric normalised 1-D Gaussian. Writes the refined points\n"
"float32 (N, 2), x and y in pixels, and fallback uint8 (N,): 1 where the map must be blurred\n"
"whole (its point is then the integer peak).");

PyDoc_STRVAR(top_peaks_doc,
"top_peaks(maps, height, width, channels, first, count, k, threshold, values, indices)\n\n"
"maps: float32 (B, channels, height, width) contiguous; of each item, the maps of channels\n"
"[first, first + count). Writes each map's k best peaks, best first, to values float32\n"
"(B, count, k) and indices int64 (B, count, k) (flat pixel index y * width + x). A peak is a\n"
"pixel >= each of its in-map neighbours of the 3x3 window (so equal to the 3x3 max-pool with\n"
"-inf padding; every pixel of a flat top is one), not NaN, > -inf and >= threshold. Order:\n"
"value descending, equal values by lower index first; rows with fewer than k peaks are padded\n"
"with value -inf and index -1.");

static PyMethodDef methods[] = {
    {"max_gaussians", max_gaussians, METH_VARARGS, max_gaussians_doc},
    {"blurred_dark_points", blurred_dark_points, METH_VARARGS, blurred_dark_points_doc},
    {"top_peaks", top_peaks, METH_VARARGS, top_peaks_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "CPU kernels of heatmapnet: target drawing, DARK decoding, peak finding.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
