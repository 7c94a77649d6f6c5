/* Mixed-task batches in one forward (and so one backward): the trunk runs
 * once over all B rows; each task's head sees only its own rows, a dim-0
 * slice of the trunk's output (a view: no copy; its backward adds into the
 * trunk's output gradient at those rows only). One loss per task, and their
 * weighted sum for the backward pass. */
#include <math.h>
#include <string.h>

#include "head_impl.h"

int mtft_multitask_rows(const int32_t *task_id, int B, int n_tasks, int *start, int *count) {
    MTFT_CHECK_ARG(task_id && start && count);
    if (B < 1) return mtft__err(MTFT_EINVAL, "multitask: batch of %d rows", B);
    if (n_tasks < 1) return mtft__err(MTFT_EINVAL, "multitask: n_tasks %d must be >= 1", n_tasks);
    for (int k = 0; k < n_tasks; k++) start[k] = count[k] = 0;
    for (int r = 0; r < B; r++) {
        const int k = task_id[r];
        if (k < 0 || k >= n_tasks)
            return mtft__err(MTFT_ERANGE, "multitask: task id %d of row %d outside [0, %d)", k, r, n_tasks);
        if (count[k] == 0) {
            start[k] = r;
        } else if (start[k] + count[k] != r) {
            return mtft__err(MTFT_EINVAL,
                             "multitask: rows of task %d are not grouped: rows %d..%d, then row %d after row %d of "
                             "task %d (group rows by task first)",
                             k, start[k], start[k] + count[k] - 1, r, r - 1, task_id[r - 1]);
        }
        count[k]++;
    }
    return MTFT_OK;
}

static int fail(mtft_graph *g, int code) {
    if (g && g->status == MTFT_OK) g->status = code;
    return code;
}

int mtft_multitask_forward(mtft_model *m, mtft_graph *g, const mtft_multitask_batch *batch,
                           mtft_head *const *heads, const mtft_head_targets *targets, int n_tasks,
                           const float *weights, mtft_tensor **task_loss, mtft_tensor **total,
                           mtft_tensor **hidden_out) {
    if (total) *total = NULL;
    if (hidden_out) *hidden_out = NULL;
    MTFT_CHECK_ARG(m && g && batch && heads && targets && task_loss && n_tasks >= 1);
    for (int k = 0; k < n_tasks; k++) task_loss[k] = NULL;
    if (g->status < 0)
        return mtft__err(MTFT_ESTATE, "multitask: the graph holds an earlier error (%s); reset it first",
                         mtft_status_str(g->status));
    if (!batch->ids || !batch->task_id) return fail(g, mtft__err(MTFT_EINVAL, "multitask: batch ids or task_id is NULL"));
    const int B = batch->B, T = batch->T;
    int *start = mtft__scratch(g, (size_t)n_tasks * 2 * sizeof(int));
    if (!start) return mtft__err(MTFT_ENOMEM, "multitask: out of memory");
    int *count = start + n_tasks;
    int rc = mtft_multitask_rows(batch->task_id, B, n_tasks, start, count);
    if (rc < 0) return fail(g, rc);
    const int C = mtft_model_get_config(m)->n_embd;
    for (int k = 0; k < n_tasks; k++) {
        if (!count[k]) continue;
        if (!heads[k])
            return fail(g, mtft__err(MTFT_EINVAL, "multitask: task %d has %d rows (from row %d) but no head", k,
                                     count[k], start[k]));
        if (heads[k]->n_embd != C)
            return fail(g, mtft__err(MTFT_ESHAPE, "multitask: head '%s' of task %d takes hidden [b, T, %d], the model "
                                                  "gives [%d, %d, %d]",
                                     heads[k]->name, k, heads[k]->n_embd, B, T, C));
        if (weights && !isfinite(weights[k]))
            return fail(g, mtft__err(MTFT_ENUMERIC, "multitask: weight %g of task %d is not finite", (double)weights[k], k));
    }
    mtft_tensor *hidden = mtft_model_hidden(m, g, batch->ids, B, T, batch->valid_len);
    if (!hidden) return fail(g, mtft_error_last()->code ? mtft_error_last()->code : MTFT_ERROR);
    if (hidden_out) *hidden_out = hidden;
    mtft_tensor *sum = NULL;
    for (int k = 0; k < n_tasks; k++) {
        if (!count[k]) continue;
        mtft_head *h = heads[k];
        const int s0 = start[k], n = count[k];
        const mtft_head_targets *t = &targets[k];
        mtft_head_targets tk;
        memset(&tk, 0, sizeof tk);
        const int64_t vs = t->values_stride ? t->values_stride : h->o.n_labels;
        tk.class_ids = t->class_ids ? t->class_ids + s0 : NULL;
        tk.token_ids = t->token_ids ? t->token_ids + (int64_t)s0 * T : NULL;
        tk.values = t->values ? t->values + (int64_t)s0 * vs : NULL;
        tk.values_stride = vs;
        mtft_tensor *rows = mtft_slice(g, hidden, 0, s0, n);
        mtft_tensor *l = mtft_head__loss(h, g, m, rows, batch->valid_len ? batch->valid_len + s0 : NULL, &tk, s0);
        if (!l) {
            mtft__err_prefix("multitask: task %d (rows %d..%d)", k, s0, s0 + n - 1);
            return g->status < 0 ? g->status : MTFT_ERROR;
        }
        task_loss[k] = l;
        if (total) {
            mtft_tensor *wl = weights ? mtft_scale(g, l, weights[k]) : l;
            sum = sum ? mtft_add(g, sum, wl) : wl;
            if (!sum) return g->status < 0 ? g->status : MTFT_ERROR;
        }
    }
    if (total) *total = sum;
    return MTFT_OK;
}
