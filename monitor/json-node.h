/*
 * Small json-glib helpers for building replies.
 */
#ifndef MONITOR_JSON_NODE_H
#define MONITOR_JSON_NODE_H

#include <json-glib/json-glib.h>

/* A node holding obj; the caller's reference moves into the node. */
static inline JsonNode *json_node_from_object(JsonObject *obj)
{
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);

    json_node_take_object(node, obj);
    return node;
}

static inline JsonNode *json_node_from_array(JsonArray *arr)
{
    JsonNode *node = json_node_new(JSON_NODE_ARRAY);

    json_node_take_array(node, arr);
    return node;
}

static inline JsonNode *json_node_new_empty_object(void)
{
    return json_node_from_object(json_object_new());
}

#endif
