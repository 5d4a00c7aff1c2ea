"""`retina-tfx make-demo-data`: a synthetic dataset in DRIVE's (or STARE's, CHASE_DB1's, HRF's)
published layout, so everything runs without the real data."""
from cli import console
from synthetic_drive import dataset, layouts


def command(args) -> int:
  def progress(done, total):
    print(f'\r  generating images: {done}/{total}', end='\n' if done == total else '', flush=True)

  try:
    summary = dataset.generate(args.out, seed=args.seed, n_train=args.train_count,
                               n_test=args.test_count, height=args.height, width=args.width,
                               progress=progress, layout=args.layout, count=args.count)
  except (ValueError, FileExistsError) as error:
    raise console.CommandError(str(error)) from error
  print(f'wrote a synthetic {layouts.LAYOUTS[args.layout].title}-like dataset in its published '
        f'layout to {args.out}: {summary}')
  return 0
