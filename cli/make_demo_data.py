"""`retina-tfx make-demo-data`: a synthetic DRIVE-like dataset, so everything runs without DRIVE."""
from cli import console
from synthetic_drive import dataset


def command(args) -> int:
  def progress(done, total):
    print(f'\r  generating images: {done}/{total}', end='\n' if done == total else '', flush=True)

  try:
    summary = dataset.generate(args.out, seed=args.seed, n_train=args.train_count,
                               n_test=args.test_count, height=args.height, width=args.width,
                               progress=progress)
  except (ValueError, FileExistsError) as error:
    raise console.CommandError(str(error)) from error
  print(f'wrote a synthetic DRIVE-like dataset to {args.out}: {summary}')
  return 0
