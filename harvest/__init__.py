"""Everything that talks to IIIF servers: manifests, collections, info.json, images."""
