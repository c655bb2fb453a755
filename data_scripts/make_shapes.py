#!/usr/bin/env python
"""Generate the learndet shapes dataset (synthetic coloured shapes, COCO json train/val splits).

    python data_scripts/make_shapes.py data/shapes --num-images 500 --img-size 256 --seed 0

Writes OUT_DIR/{train,val}/*.jpg, OUT_DIR/annotations/instances_{train,val}.json, classes.txt, shapes_meta.json.
"""
import argparse
import sys
import time
from pathlib import Path

try:
    from learndet.data.shapes import DEFAULT_CLASSES, SHAPE_CLASSES, make_shapes
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from learndet.data.shapes import DEFAULT_CLASSES, SHAPE_CLASSES, make_shapes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out_dir', help='folder to create (must not exist unless --overwrite)')
    p.add_argument('--num-images', type=int, default=500)
    p.add_argument('--img-size', type=int, nargs='+', default=[256], help='SIZE or WIDTH HEIGHT')
    p.add_argument('--classes', nargs='+', default=list(DEFAULT_CLASSES), choices=SHAPE_CLASSES)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--val-fraction', type=float, default=0.2)
    p.add_argument('--max-objects', type=int, default=6)
    p.add_argument('--empty-prob', type=float, default=0.1)
    p.add_argument('--ext', choices=('jpg', 'png'), default='jpg')
    p.add_argument('--overwrite', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(args.img_size) not in (1, 2):
        sys.exit('--img-size takes SIZE or WIDTH HEIGHT')
    img_size = args.img_size[0] if len(args.img_size) == 1 else tuple(args.img_size)
    t0 = time.perf_counter()
    try:   # make_shapes holds a lock on OUT_DIR while it writes: two runs at once never replace each other's set
        root = make_shapes(args.out_dir, num_images=args.num_images, img_size=img_size, classes=args.classes,
                           seed=args.seed, val_fraction=args.val_fraction, max_objects=args.max_objects,
                           empty_prob=args.empty_prob, ext=args.ext, overwrite=args.overwrite)
    except (OSError, ValueError) as e:         # an existing OUT_DIR (see --overwrite), bad parameters, a full disk
        print(f'make_shapes.py: error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {args.num_images} images to {root} in {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
