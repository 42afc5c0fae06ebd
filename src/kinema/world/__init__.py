"""The Shapes world (see /work/shared/SHAPES.md): captions, a renderer with exact ground truth,
and a seeded dataset. Submodules: `scene` (vocabulary, captions), `render`, `dataset`."""
