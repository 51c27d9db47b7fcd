-- Version 7: roles hold grants ({resources, actions, namespaces, pipelines}) instead of single permissions
-- ({resource, action}); rows written by version 4 are converted, each permission becoming a grant on all
-- namespaces and pipelines.
UPDATE roles SET permissions = (
    SELECT json_group_array(json_object(
        'resources', json_array(json_extract(value, '$.resource')),
        'actions', json_array(json_extract(value, '$.action')),
        'namespaces', json_array('*'),
        'pipelines', json_array('*')))
    FROM json_each(roles.permissions)
)
WHERE json_type(permissions, '$[0].resource') IS NOT NULL;
