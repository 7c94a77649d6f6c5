/* YAML to a small tree with marks, through libyaml's document loader. The
 * only file of mtft that includes <yaml.h>. */
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "config_impl.h"

#define MAX_DEPTH 64
#define MAX_NODES 1000000

typedef struct build_ctx {
    yaml_document_t *doc;
    const char *name;
    long budget;
} build_ctx;

void mtft_cfg__free(mtft_cnode *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        if (n->items) mtft_cfg__free(n->items[i]);
        if (n->keys) mtft_cfg__free(n->keys[i]);
    }
    mtft__free(n->items);
    mtft__free(n->keys);
    mtft__free(n->value);
    mtft__free(n);
}

static int build(build_ctx *c, yaml_node_t *yn, int depth, mtft_cnode **out) {
    *out = NULL;
    int line = (int)yn->start_mark.line + 1, col = (int)yn->start_mark.column + 1;
    if (depth > MAX_DEPTH)
        return mtft__err(MTFT_EFORMAT, "%s:%d:%d: nesting deeper than %d levels", c->name, line, col, MAX_DEPTH);
    if (--c->budget < 0)
        return mtft__err(MTFT_EFORMAT, "%s:%d:%d: more than %d nodes (aliases expand too far?)", c->name, line, col,
                         MAX_NODES);
    mtft_cnode *n = mtft__calloc(1, sizeof *n);
    if (!n) return mtft__err(MTFT_ENOMEM, "config: out of memory");
    n->line = line;
    n->col = col;
    int rc = MTFT_OK;
    switch (yn->type) {
    case YAML_SCALAR_NODE:
        n->kind = MTFT_CN_SCALAR;
        n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->value = mtft__malloc(yn->data.scalar.length + 1);
        if (!n->value) {
            rc = mtft__err(MTFT_ENOMEM, "config: out of memory");
            break;
        }
        memcpy(n->value, yn->data.scalar.value, yn->data.scalar.length);
        n->value[yn->data.scalar.length] = '\0';
        if (strlen(n->value) != yn->data.scalar.length)
            rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: scalar holds a NUL character", c->name, line, col);
        break;
    case YAML_SEQUENCE_NODE: {
        n->kind = MTFT_CN_SEQ;
        int cnt = (int)(yn->data.sequence.items.top - yn->data.sequence.items.start);
        if (cnt > 0 && !(n->items = mtft__calloc((size_t)cnt, sizeof *n->items))) {
            rc = mtft__err(MTFT_ENOMEM, "config: out of memory");
            break;
        }
        for (int i = 0; i < cnt && rc == MTFT_OK; i++) {
            yaml_node_t *child = yaml_document_get_node(c->doc, yn->data.sequence.items.start[i]);
            n->n = i + 1;
            rc = build(c, child, depth + 1, &n->items[i]);
        }
        break;
    }
    case YAML_MAPPING_NODE: {
        n->kind = MTFT_CN_MAP;
        int cnt = (int)(yn->data.mapping.pairs.top - yn->data.mapping.pairs.start);
        if (cnt > 0 && (!(n->items = mtft__calloc((size_t)cnt, sizeof *n->items)) ||
                        !(n->keys = mtft__calloc((size_t)cnt, sizeof *n->keys)))) {
            rc = mtft__err(MTFT_ENOMEM, "config: out of memory");
            break;
        }
        for (int i = 0; i < cnt && rc == MTFT_OK; i++) {
            yaml_node_pair_t *pr = &yn->data.mapping.pairs.start[i];
            yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
            yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
            n->n = i + 1;
            if (k->type != YAML_SCALAR_NODE) {
                rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: mapping keys must be plain names, not a %s", c->name,
                               (int)k->start_mark.line + 1, (int)k->start_mark.column + 1,
                               k->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
                break;
            }
            if ((rc = build(c, k, depth + 1, &n->keys[i])) != MTFT_OK) break;
            for (int j = 0; j < i; j++)
                if (strcmp(n->keys[j]->value, n->keys[i]->value) == 0) {
                    rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: duplicate key '%s' (first at line %d)", c->name,
                                   n->keys[i]->line, n->keys[i]->col, n->keys[i]->value, n->keys[j]->line);
                    break;
                }
            if (rc == MTFT_OK) rc = build(c, v, depth + 1, &n->items[i]);
        }
        break;
    }
    default:
        rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: empty node", c->name, line, col);
        break;
    }
    if (rc != MTFT_OK) {
        mtft_cfg__free(n);
        return rc;
    }
    *out = n;
    return MTFT_OK;
}

static int parser_error(const yaml_parser_t *p, const char *name) {
    const char *what = p->problem ? p->problem : "unknown error";
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_MEMORY_ERROR) return mtft__err(MTFT_ENOMEM, "%s: out of memory while parsing YAML", name);
    if (p->context)
        return mtft__err(MTFT_EFORMAT, "%s:%d:%d: YAML syntax error: %s %s (line %d)", name, line, col, what,
                         p->context, (int)p->context_mark.line + 1);
    return mtft__err(MTFT_EFORMAT, "%s:%d:%d: YAML syntax error: %s", name, line, col, what);
}

int mtft_cfg__parse(const char *text, size_t len, const char *name, mtft_cnode **out) {
    *out = NULL;
    if (!name) name = "<config>";
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return mtft__err(MTFT_ENOMEM, "%s: cannot initialise libyaml", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = MTFT_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = parser_error(&parser, name);
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        /* an empty stream: an empty mapping */
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        mtft_cnode *n = mtft__calloc(1, sizeof *n);
        if (!n) return mtft__err(MTFT_ENOMEM, "config: out of memory");
        n->kind = MTFT_CN_MAP;
        n->line = n->col = 1;
        *out = n;
        return MTFT_OK;
    }
    build_ctx c = {&doc, name, MAX_NODES};
    rc = build(&c, root, 0, out);
    yaml_document_delete(&doc);
    if (rc == MTFT_OK) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            rc = parser_error(&parser, name);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2)
                rc = mtft__err(MTFT_EFORMAT, "%s:%d:%d: a second YAML document; a config holds one", name,
                               (int)r2->start_mark.line + 1, (int)r2->start_mark.column + 1);
            yaml_document_delete(&next);
        }
        if (rc != MTFT_OK) {
            mtft_cfg__free(*out);
            *out = NULL;
        }
    }
    yaml_parser_delete(&parser);
    return rc;
}

const mtft_cnode *mtft_cfg__get(const mtft_cnode *map, const char *key) {
    if (!map || map->kind != MTFT_CN_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->value, key) == 0) return map->items[i];
    return NULL;
}

int mtft_cfg__is_null(const mtft_cnode *n) {
    if (!n || n->kind != MTFT_CN_SCALAR || !n->plain) return 0;
    const char *v = n->value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

const char *mtft_cfg__kind_name(const mtft_cnode *n) {
    if (!n) return "nothing";
    switch (n->kind) {
    case MTFT_CN_SCALAR: return mtft_cfg__is_null(n) ? "null" : "a scalar";
    case MTFT_CN_SEQ: return "a sequence";
    case MTFT_CN_MAP: return "a mapping";
    }
    return "?";
}
